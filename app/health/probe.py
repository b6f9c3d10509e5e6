"""A periodic cheap probe of the database, for the `hitl.database.up` gauge (DatabaseDown).

The probe has a connection of its own (a one-connection pool, checked on checkout), so an
exhausted request pool is not mistaken for a database that is down, and it is not traced. It
runs on a thread of its own every interval (start()); the gauge reports the last result, so a
database that hangs never stalls the metric export.
"""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import _pool_name, connect_args, prepare_url
from app.periodic import Periodic


class DatabaseProbe:
    def __init__(self, settings: Settings, interval_seconds: float):
        url = prepare_url(settings.database_url)
        self.system = "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgresql"
        self.pool_name = _pool_name(url)
        self._engine = create_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=settings.db_connect_timeout_seconds,
            pool_pre_ping=True, connect_args=connect_args(settings),
        )
        self._up: int | None = None
        self.probed_at = 0.0  # Unix time of the last probe: a stopped process's stops advancing
        self._runner = Periodic("database-probe", interval_seconds, self.probe)

    def start(self) -> None:
        self._runner.start()

    def probe(self) -> int:
        """SELECT 1 now: 1 if it answered, else 0 (also what up() reports from now on)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            self._up = 1
        except Exception:  # noqa: BLE001 - any failure to answer is "down"
            self._up = 0
        self.probed_at = time.time()
        return self._up

    def up(self) -> int | None:
        """The last probe's result (None before the first: nothing is reported yet)."""
        return self._up

    def close(self) -> None:
        self._runner.stop()
        self._engine.dispose()
