"""The service's own metric instruments. contract.yaml is their specification: every instrument
here is one of its entries with the same name, unit and kind, and back
(tests/telemetry/test_metrics_module.py); the attributes are compared on the exported telemetry
(tests/telemetry/test_contract.py).

Instruments are created on the global meter at import time; before telemetry is set up the
OpenTelemetry API hands out proxies, so importing this module never needs a provider.
"""

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from app import __version__

_meter = metrics.get_meter("hitl-review", __version__)

# Human decisions take minutes to days; the low buckets keep the simulator's seconds visible.
DECISION_DURATION_BUCKETS_SECONDS = (
    1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800,
)
POOL_WAIT_BUCKETS_SECONDS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10)

reviews_created = _meter.create_counter(
    "hitl.reviews.created", unit="{review}", description="Reviews submitted by the pipeline."
)
decisions = _meter.create_counter(
    "hitl.decisions", unit="{decision}", description="Decisions taken by reviewers."
)
decision_duration = _meter.create_histogram(
    "hitl.decision.duration",
    unit="s",
    description="Time from a review's creation to its decision.",
    explicit_bucket_boundaries_advisory=DECISION_DURATION_BUCKETS_SECONDS,
)
actions = _meter.create_counter(
    "hitl.actions", unit="{action}", description="Code-host actions attempted after decisions, by outcome."
)
cache_hits = _meter.create_counter("hitl.cache.hits", unit="{lookup}", description="Cache lookups that found a value.")
cache_misses = _meter.create_counter(
    "hitl.cache.misses", unit="{lookup}", description="Cache lookups that found nothing (or failed)."
)
cache_errors = _meter.create_counter(
    "hitl.cache.errors", unit="{operation}", description="Cache operations that failed; the service went on without the cache."
)
_db_wait = _meter.create_histogram(
    "db.client.connection.wait_time",
    unit="s",
    description="Time a checkout waited for a pooled database connection.",
    explicit_bucket_boundaries_advisory=POOL_WAIT_BUCKETS_SECONDS,
)
_POOL = "db.client.connection.pool.name"


# Waiting checkouts per pool: a plain counter read by an observable instrument, so a
# checkout costs no metric update.
_pending_checkouts: dict[str, int] = {}
_pending_lock = threading.Lock()


def db_pending_requests_add(delta: int, pool_name: str) -> None:
    with _pending_lock:
        _pending_checkouts[pool_name] = _pending_checkouts.get(pool_name, 0) + delta


def db_wait_time_record(seconds: float, pool_name: str) -> None:
    _db_wait.record(seconds, {_POOL: pool_name})


_pools: dict[str, tuple[object, int]] = {}


def observe_pool(pool, pool_name: str, max_connections: int) -> None:
    """Report this pool's used/idle/max connections (the latest pool of a name wins)."""
    _pools[pool_name] = (pool, max_connections)


def _pool_counts(_: CallbackOptions) -> Iterable[Observation]:
    for name, (pool, _max) in list(_pools.items()):
        used = pool.checkedout()
        idle = pool.checkedin()
        yield Observation(used, {_POOL: name, "db.client.connection.state": "used"})
        yield Observation(idle, {_POOL: name, "db.client.connection.state": "idle"})


def _pool_max(_: CallbackOptions) -> Iterable[Observation]:
    for name, (_pool, max_connections) in list(_pools.items()):
        yield Observation(max_connections, {_POOL: name})


_meter.create_observable_up_down_counter(
    "db.client.connection.count",
    callbacks=[_pool_counts],
    unit="{connection}",
    description="Pooled database connections by state.",
)
_meter.create_observable_up_down_counter(
    "db.client.connection.pending_requests",
    callbacks=[lambda _: [Observation(n, {_POOL: name}) for name, n in list(_pending_checkouts.items())]],
    unit="{request}",
    description="Checkouts waiting for a pooled database connection.",
)
_meter.create_observable_up_down_counter(
    "db.client.connection.max",
    callbacks=[_pool_max],
    unit="{connection}",
    description="Most connections the pool will open.",
)

# Readers registered by the parts that own the data (the review queue, the cache).
_shared_state_reader: Callable[[], "SharedStateLike"] | None = None
_evictions_reader: Callable[[], dict[str, int]] | None = None


class SharedStateLike(Protocol):  # what app/reviews/gauges.py's SharedState provides (no import cycle)
    read_at: float
    pending: dict[str, tuple[int, float]]
    outbox_entries: int
    outbox_oldest_age: float
    outbox_overdue: float
    failed: dict[str, int]


def set_shared_state_reader(reader: Callable[[], SharedStateLike]) -> None:
    """reader() -> the latest reading of the database's queue and outbox (app/reviews/gauges.py)."""
    global _shared_state_reader
    _shared_state_reader = reader


def set_evictions_reader(reader: Callable[[], dict[str, int]]) -> None:
    """reader() -> {cache backend: evictions so far}."""
    global _evictions_reader
    _evictions_reader = reader


def _shared(observe: Callable[[SharedStateLike], Iterable[Observation]]):
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        if _shared_state_reader is None:
            return []
        state = _shared_state_reader()
        return list(observe(state)) if state.read_at else []

    return callback


def _evictions(_: CallbackOptions) -> Iterable[Observation]:
    if _evictions_reader is None:
        return []
    return [Observation(n, {"hitl.cache.backend": backend}) for backend, n in _evictions_reader().items()]


_meter.create_observable_gauge(
    "hitl.reviews.pending",
    callbacks=[_shared(lambda s: (Observation(n, {"hitl.review.severity": k}) for k, (n, _) in s.pending.items()))],
    unit="{review}",
    description="Reviews waiting for a decision (pending or escalated), by severity.",
)
_meter.create_observable_gauge(
    "hitl.reviews.pending.oldest_age",
    callbacks=[_shared(lambda s: (Observation(a, {"hitl.review.severity": k}) for k, (_, a) in s.pending.items()))],
    unit="s",
    description="How long the oldest waiting review of each severity has waited.",
)
_meter.create_observable_gauge(
    "hitl.actions.outbox.entries",
    callbacks=[_shared(lambda s: [Observation(s.outbox_entries)])],
    unit="{action}",
    description="Actions decided but not carried out yet (an attempt in flight, or waiting for a retry).",
)
_meter.create_observable_gauge(
    "hitl.actions.outbox.oldest_age",
    callbacks=[_shared(lambda s: [Observation(s.outbox_oldest_age)])],
    unit="s",
    description="Time since the decision of the oldest action not carried out yet.",
)
_meter.create_observable_gauge(
    "hitl.actions.outbox.overdue",
    callbacks=[_shared(lambda s: [Observation(s.outbox_overdue)])],
    unit="s",
    description="How far the most overdue action is past its retry time or its attempt's lease (0: none).",
)
_meter.create_observable_gauge(
    "hitl.actions.failed",
    callbacks=[_shared(lambda s: (Observation(n, {"hitl.action": k}) for k, n in s.failed.items()))],
    unit="{action}",
    description="Actions that failed on every attempt and wait for an operator (stored, not a rate).",
)
_meter.create_observable_gauge(
    "hitl.shared_state.reading.time",
    callbacks=[_shared(lambda s: [Observation(s.read_at)])],
    unit="s",
    description="Unix time of the reading behind the queue and outbox gauges: only fresh readings count.",
)
_database_probes: list = []


def observe_database(probe) -> None:
    """Report probe.up() as hitl.database.up (app/health/probe.py; the latest probe wins)."""
    _database_probes[:] = [probe]


_meter.create_observable_gauge(
    "hitl.database.up",
    callbacks=[lambda _: [
        Observation(up, {"db.system.name": p.system, _POOL: p.pool_name})
        for p in list(_database_probes) if (up := p.up()) is not None
    ]],
    unit="",
    description="1 while the database answers a probe query (SELECT 1 on a connection of its own), else 0.",
)
_meter.create_observable_gauge(
    "hitl.database.probe.time",
    callbacks=[lambda _: [
        Observation(p.probed_at, {"db.system.name": p.system, _POOL: p.pool_name})
        for p in list(_database_probes) if p.up() is not None
    ]],
    unit="s",
    description="Unix time of the last database probe: a process whose probes stopped is not counted.",
)
_meter.create_observable_counter(
    "hitl.cache.evictions",
    callbacks=[_evictions],
    unit="{entry}",
    description="Entries the cache evicted to stay within its memory bound.",
)
