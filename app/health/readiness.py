"""The readiness check: its own database connection, its own thread and its own time bound.

Under overload every request thread and every pooled connection is busy; a check that queued
for them (as a plain route does) waited out the pool timeout, failed, and took a replica that
was only busy out of rotation, moving its load to the others. So the check runs on a thread of
its own (the route is async and never takes a request thread), on a one-connection pool of its
own (as the database probe, app/health/probe.py), and answers within READINESS_TIMEOUT_SECONDS,
under the probes' 5 s timeout (stack/kubernetes.py): a database that does not answer by then
is reported unavailable. Checks that arrive while one is running wait for that one instead of
queueing behind it, so a hanging database never piles up work here.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import create_engine, text

from app.cache import Cache
from app.config import Settings
from app.db import connect_args, prepare_url

READINESS_TIMEOUT_SECONDS = 2.0


class ReadinessCheck:
    def __init__(self, settings: Settings, cache: Cache):
        self._engine = create_engine(
            prepare_url(settings.database_url), pool_size=1, max_overflow=0,
            pool_timeout=READINESS_TIMEOUT_SECONDS, pool_pre_ping=True, connect_args=connect_args(settings),
        )
        self._cache = cache
        self._thread: ThreadPoolExecutor | None = None  # made on first use; the app may start again after close()
        self._running: Future | None = None

    def _check(self) -> dict:
        # Probes are not traced (app/telemetry), so neither are their queries.
        with suppress_instrumentation():
            try:
                with self._engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                database = "ok"
            except Exception:  # noqa: BLE001 - any failure means not ready
                database = "unavailable"
            cache = "ok" if self._cache.ping() else "degraded"
        return {"status": "ok" if database == "ok" else "unavailable", "database": database, "cache": cache}

    async def check(self) -> dict:
        """{status, database, cache}; status "ok" when the database answered in time."""
        running = self._running
        if running is None or running.done():
            if self._thread is None:
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readiness")
            running = self._running = self._thread.submit(self._check)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), READINESS_TIMEOUT_SECONDS)
        except TimeoutError:
            return {"status": "unavailable", "database": "unavailable", "cache": "unknown"}

    def close(self) -> None:
        thread, self._thread, self._running = self._thread, None, None
        if thread is not None:
            thread.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
