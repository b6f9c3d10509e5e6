"""Readings of state every replica shares (the database's queue and outbox) for the gauges.

Every replica reports the same numbers under its own `service.instance.id`, and a replica that
died leaves its last reading in the collector's exporter for up to its metric expiration. So each
reading is reported with the time it was taken (`hitl.shared_state.reading.time`): Prometheus'
recording rules keep only fresh readings and take one value across replicas instead of a sum
(prometheus/rules/recording.yml, `hitl:…:current`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from app.db import utcnow
from app.periodic import Periodic
from app.reviews.flows import failed_for_good
from app.reviews.models import ACTION_FOR_DECISION, WAITING, Decision, Review, Severity

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class SharedState:
    read_at: float  # Unix time of the reading; 0 before the first one succeeded
    # severity -> (reviews waiting, age in seconds of the oldest)
    pending: dict[str, tuple[int, float]] = field(default_factory=dict)
    outbox_entries: int = 0  # actions not carried out yet (in flight or waiting for a retry)
    outbox_oldest_age: float = 0.0  # seconds since the decision of the oldest of them
    outbox_overdue: float = 0.0  # seconds the most overdue of them is past its due time or lease
    failed: dict[str, int] = field(default_factory=dict)  # action -> actions that failed for good


def read_shared_state(sessions: sessionmaker, now: datetime | None = None) -> SharedState:
    now = now or utcnow()
    with sessions() as session:
        rows = session.execute(
            select(Review.severity, func.count(), func.min(Review.created_at))
            .where(Review.status.in_(WAITING))
            .group_by(Review.severity)
        ).all()
        entries, oldest, most_overdue = session.execute(
            select(func.count(), func.min(Decision.created_at), func.min(Decision.action_next_attempt_at)).where(
                Decision.action_next_attempt_at.is_not(None)
            )
        ).one()
        failed_rows = session.execute(
            select(Decision.action, func.count())
            .where(failed_for_good())
            .group_by(Decision.action)
        ).all()
    pending = {s.value: (0, 0.0) for s in Severity}
    for severity, count, first in rows:
        pending[severity.value] = (count, _age(now, first))
    return SharedState(
        read_at=now.timestamp(),
        pending=pending,
        outbox_entries=int(entries or 0),
        outbox_oldest_age=_age(now, oldest),
        outbox_overdue=_age(now, most_overdue),
        failed=dict.fromkeys(ACTION_FOR_DECISION.values(), 0) | dict(failed_rows),
    )


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite aggregates return naive values
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())


class SharedStateGauge:
    """Reads the shared state on a thread of its own every refresh interval (start()); the gauges
    report the last reading, so an unreachable database never stalls the metric export. When the
    database cannot be read the last reading stays, and its time stops advancing."""

    def __init__(self, sessions: sessionmaker, refresh_seconds: float):
        self._sessions = sessions
        self._value = SharedState(read_at=0.0)
        self._runner = Periodic("shared-state-reader", refresh_seconds, self.refresh)

    def start(self) -> None:
        self._runner.start()

    def stop(self) -> None:
        self._runner.stop()

    def refresh(self) -> SharedState:
        try:
            with suppress_instrumentation():
                self._value = read_shared_state(self._sessions)
        except Exception:  # noqa: BLE001 - database down: keep the last reading
            log.warning("shared state reading failed", exc_info=False)
        return self._value

    def read(self) -> SharedState:
        return self._value
