"""Engine, sessions and the declarative base.

The pool is a QueuePool subclass that reports how long a checkout waited and how many are
waiting, the two pool readings SQLAlchemy's own instrumentation does not give.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Engine, Float, create_engine, event, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import TypeDecorator

from app.config import Settings
from app.telemetry import metrics


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes in UTC on every backend. SQLite keeps no zone: it stores the wall
    time as given, so a time in another zone is converted to UTC on the way in, or it would be
    read back as that wall time in UTC (another instant)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored in UTC (above)
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)  # PostgreSQL answers in the session's time zone


class database_time(FunctionElement):  # noqa: N801 - reads as the SQL function it compiles to
    """The database's current time plus `seconds`, as a UTCDateTime: what replicas compare on one
    clock (their own clocks may be skewed). PostgreSQL: now(), the transaction's start; SQLite:
    strftime() of 'now' in the text form SQLAlchemy stores datetimes in, so both compare as text."""

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds=0.0):
        """seconds: a number, or an expression of one (NULL gives NULL)."""
        super().__init__(literal(float(seconds), Float) if isinstance(seconds, int | float) else seconds)


@compiles(database_time, "postgresql")
def _database_time_postgresql(element, compiler, **kw):
    return f"(now() + make_interval(secs => {compiler.process(element.clauses, **kw)}))"


@compiles(database_time, "sqlite")
def _database_time_sqlite(element, compiler, **kw):
    # %f is seconds with milliseconds; the zeros make the microseconds SQLAlchemy writes and parses.
    return f"strftime('%Y-%m-%d %H:%M:%f000', 'now', ({compiler.process(element.clauses, **kw)}) || ' seconds')"


class Base(DeclarativeBase):
    pass


class InstrumentedQueuePool(QueuePool):
    """QueuePool that records checkout wait time and the number of waiting checkouts."""

    pool_name = "default"

    def _do_get(self):
        metrics.db_pending_requests_add(1, self.pool_name)
        start = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            metrics.db_pending_requests_add(-1, self.pool_name)
            metrics.db_wait_time_record(time.perf_counter() - start, self.pool_name)


def prepare_url(url: str) -> str:
    """The SQLAlchemy URL to use: psycopg 3 for PostgreSQL; SQLite's folder created."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    return url


def connect_args(settings: Settings) -> dict:
    """Driver arguments that bound every wait on the database (see the settings)."""
    if settings.is_sqlite:
        return {"check_same_thread": False, "timeout": settings.db_connect_timeout_seconds}
    return {
        "connect_timeout": max(1, int(settings.db_connect_timeout_seconds)),
        "options": f"-c statement_timeout={settings.db_statement_timeout_ms}",
        # Notice a dead peer (a partition, not a clean close) in seconds, not hours.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "tcp_user_timeout": int(settings.db_statement_timeout_ms) + 1000,
    }


def make_engine(settings: Settings) -> Engine:
    url = prepare_url(settings.database_url)
    pool_class = type(
        "InstrumentedQueuePool", (InstrumentedQueuePool,), {"pool_name": _pool_name(url)}
    )
    engine = create_engine(
        url,
        poolclass=pool_class,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        connect_args=connect_args(settings),
    )
    if settings.is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    metrics.observe_pool(engine.pool, pool_class.pool_name, settings.db_pool_size + settings.db_max_overflow)
    return engine


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _pool_name(url: str) -> str:
    """host:port/database, never the credentials."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return "sqlite"
    return f"{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"


class Database:
    def __init__(self, settings: Settings):
        self.engine = make_engine(settings)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Iterator[Session]:
        with self.sessionmaker() as session:
            yield session
