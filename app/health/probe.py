"""A periodic cheap probe of the database, for the `hitl.database.up` gauge (DatabaseDown).

The probe has a connection of its own (a one-connection pool, checked on checkout), so an
exhausted request pool is not mistaken for a database that is down, and it is not traced. It
runs when the gauge is collected (every metric export), at most once per interval.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import _pool_name, connect_args, prepare_url


class DatabaseProbe:
    def __init__(self, settings: Settings, interval_seconds: float):
        url = prepare_url(settings.database_url)
        self.system = "sqlite" if make_url(url).get_backend_name() == "sqlite" else "postgresql"
        self.pool_name = _pool_name(url)
        self._engine = create_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=settings.db_connect_timeout_seconds,
            pool_pre_ping=True, connect_args=connect_args(settings),
        )
        self._interval = interval_seconds
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._up = 0

    def up(self) -> int:
        """1 if `SELECT 1` answered (now, or within the interval), else 0."""
        with self._lock:
            if time.monotonic() - self._at >= self._interval:
                try:
                    with self._engine.connect() as conn:
                        conn.execute(text("SELECT 1"))
                    self._up = 1
                except Exception:  # noqa: BLE001 - any failure to answer is "down"
                    self._up = 0
                self._at = time.monotonic()
            return self._up

    def close(self) -> None:
        self._engine.dispose()
