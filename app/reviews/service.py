"""What the review service does, as plain functions over a session."""

from __future__ import annotations

import functools
import json
import logging
import random
import threading
from datetime import UTC, datetime, timedelta

from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from opentelemetry.propagate import extract, inject
from sqlalchemy import bindparam, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from app.cache import Cache
from app.db import UTCDateTime, utcnow
from app.reviews.actions import NO_CODE_HOST, CodeHost
from app.reviews.models import (
    ACTION_FOR_DECISION,
    Decision,
    DecisionKind,
    Review,
    ReviewStatus,
    Severity,
    new_id,
)
from app.reviews.schemas import DecisionCreate, ReviewCreate
from app.telemetry import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hitl-review")

STATS_KEY = "hitl:stats:v1"
WAITING = (ReviewStatus.pending, ReviewStatus.escalated)


class Conflict(Exception):
    """The request is valid but the review's state forbids it (HTTP 409)."""


def waiting_seconds(review: Review, now: datetime | None = None) -> float:
    end = review.decided_at or now or utcnow()
    return max(0.0, (end - review.created_at).total_seconds())


def submit_review(*, session: Session, cache: Cache, data: ReviewCreate) -> tuple[Review, bool]:
    """Store a review; a repeat apv_code returns the stored one. (review, created?)"""
    existing = session.scalar(select(Review).where(Review.apv_code == data.apv_code))
    if existing is not None:
        return existing, False
    review = Review(**data.model_dump())
    session.add(review)
    try:
        session.commit()
    except IntegrityError:  # a concurrent submit of the same apv_code won
        session.rollback()
        existing = session.scalar(select(Review).where(Review.apv_code == data.apv_code))
        if existing is None:
            raise
        return existing, False
    metrics.reviews_created.add(
        1, {"hitl.review.severity": review.severity.value, "hitl.review.source": review.source}
    )
    span = trace.get_current_span()
    span.set_attribute("hitl.review.severity", review.severity.value)
    log.info("review submitted", extra={"hitl.review.id": review.id, "hitl.review.severity": review.severity.value})
    invalidate_stats(cache)
    return review, True


def list_reviews(
    *,
    session: Session,
    status: ReviewStatus | None = None,
    severity: Severity | None = None,
    patch_strategy=None,
    wargame_verdict=None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Review], int]:
    filters = [
        column == value
        for column, value in (
            (Review.status, status),
            (Review.severity, severity),
            (Review.patch_strategy, patch_strategy),
            (Review.wargame_verdict, wargame_verdict),
        )
        if value is not None
    ]
    # One round trip: the page and the total (a window count over the filtered rows).
    total_col = func.count().over().label("total")
    rows = session.execute(
        select(Review, total_col)
        .where(*filters)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    if rows:
        return [row[0] for row in rows], int(rows[0][1])
    if offset == 0:
        return [], 0
    # Past the end: the page is empty, the total still needs counting.
    return [], int(session.scalar(select(func.count()).select_from(Review).where(*filters)) or 0)


def decide(
    *,
    session: Session,
    cache: Cache,
    code_host: CodeHost,
    review_id: str,
    data: DecisionCreate,
    reviewer: str,
    retry_base_seconds: float = 2.0,
    max_attempts: int = 5,
) -> Decision:
    now = utcnow()
    carrier: dict[str, str] = {}
    inject(carrier)
    # With no code host there is nothing to call: the action is stored as skipped with the
    # decision instead of being recorded by a second write.
    skipped = None if code_host.configured else NO_CODE_HOST
    values = {
        "id": new_id(),
        "decision": data.decision,
        "justification": data.justification,
        "confidence": data.confidence,
        "modifications": data.modifications,
        "reviewer": reviewer,
        "action": ACTION_FOR_DECISION[data.decision],
        "action_status": "skipped" if skipped else "pending",
        "action_attempts": 1 if skipped else 0,
        "action_error": skipped,
        "traceparent": carrier.get("traceparent"),
        "created_at": now,
    }
    params = {"review_id": review_id, "now": now}
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        params |= {f"d_{name}": value for name, value in values.items()}
        row = session.execute(_claim_and_insert(data.decision), params).one_or_none()
        if row is None:
            raise _refusal(session, review_id, data.decision)
        pr_number, apv_code, *snapshot, latency = row
        snapshot = dict(zip(SNAPSHOT, snapshot, strict=True))
    else:
        review = session.scalars(
            _claim_returning_review(data.decision), params, execution_options={"synchronize_session": False}
        ).one_or_none()
        if review is None:
            raise _refusal(session, review_id, data.decision)
        pr_number, apv_code = review.pr_number, review.apv_code
        snapshot = {column: getattr(review, column) for column in SNAPSHOT}
        latency = max(0.0, (now - review.created_at).total_seconds())
    decision = Decision(
        **values, review_id=review_id, **snapshot, decision_latency_seconds=latency, action_next_attempt_at=None
    )
    if postgresql:
        make_transient_to_detached(decision)  # its row exists already: later changes are UPDATEs
    session.add(decision)
    session.commit()

    attrs = {"hitl.decision": data.decision.value, "hitl.review.severity": decision.severity.value}
    metrics.decisions.add(1, attrs)
    metrics.decision_duration.record(decision.decision_latency_seconds, attrs)
    span = trace.get_current_span()
    span.set_attributes(attrs)
    log.info("decision recorded", extra={"hitl.decision": data.decision.value, "hitl.review.id": review_id})
    invalidate_stats(cache)

    if skipped:  # a span (with no children, so never made current) says so in the trace
        outcome = {"hitl.action": decision.action, "hitl.action.outcome": "skipped"}
        tracer.start_span(f"action {decision.action}", attributes=outcome).end()
        metrics.actions.add(1, outcome)
    else:
        run_action(
            session=session,
            code_host=code_host,
            decision=decision,
            pr_number=pr_number,
            apv_code=apv_code,
            retry_base_seconds=retry_base_seconds,
            max_attempts=max_attempts,
        )
    return decision


# Review columns a decision copies at decision time.
SNAPSHOT = ("cve_id", "severity", "patch_strategy", "wargame_verdict")


@functools.cache
def _claim(kind: DecisionKind):
    """UPDATE that claims the review (bound: review_id, now). It only matches a review in a state
    that allows this decision; its row lock makes a concurrent second decision re-check (and
    miss) the new state. Built once per kind: building and keying it cost more than running it."""
    allowed = (ReviewStatus.pending,) if kind is DecisionKind.escalate else WAITING
    now = bindparam("now", type_=UTCDateTime)
    claim = update(Review).where(Review.id == bindparam("review_id"), Review.status.in_(allowed))
    if kind in (DecisionKind.approve, DecisionKind.reject):
        claim = claim.where(Review.pr_number.is_not(None))
    if kind is DecisionKind.escalate:
        return claim.values(status=ReviewStatus.escalated, updated_at=now)
    return claim.values(status=ReviewStatus.decided, decided_at=now, updated_at=now)


@functools.cache
def _claim_returning_review(kind: DecisionKind):
    """SQLite (no data-modifying CTEs): the claim, returning the claimed review."""
    return _claim(kind).returning(Review)


@functools.cache
def _claim_and_insert(kind: DecisionKind):
    """PostgreSQL: the claim and the decision's INSERT as one statement (one round trip), bound
    with review_id, now and d_<column> for the decision's own columns. Its row is (pr_number,
    apv_code, *SNAPSHOT, decision latency); no row when the claim matched nothing. It returns only
    what the caller does not know: the statement's text is exported with its span."""
    claimed = _claim(kind).returning(
        Review.created_at, Review.pr_number, Review.apv_code, *(Review.__table__.c[c] for c in SNAPSHOT)
    ).cte("claimed")
    columns = Decision.__table__.c
    now = bindparam("now", type_=UTCDateTime)
    source = {
        column.name: bindparam(f"d_{column.name}", type_=column.type)
        for column in columns
        if column.name not in (*SNAPSHOT, "decision_latency_seconds", "action_next_attempt_at")
    }
    source["review_id"] = bindparam("review_id", type_=columns.review_id.type)
    source |= {column: claimed.c[column] for column in SNAPSHOT}
    latency = func.greatest(0.0, func.extract("epoch", now - claimed.c.created_at))
    source["decision_latency_seconds"] = latency.cast(columns.decision_latency_seconds.type)
    inserted = (
        insert(Decision)
        .from_select(list(source), select(*source.values()).select_from(claimed))
        .returning(columns.decision_latency_seconds)
        .cte("inserted")
    )
    return select(
        claimed.c.pr_number, claimed.c.apv_code, *(claimed.c[c] for c in SNAPSHOT), inserted.c.decision_latency_seconds
    ).join_from(claimed, inserted, true())  # one row each, or none


def _refusal(session: Session, review_id: str, decision: DecisionKind) -> Exception:
    """Why the review could not take this decision: unknown (LookupError) or its state (Conflict)."""
    session.rollback()
    review = session.get(Review, review_id)
    if review is None:
        return LookupError(review_id)
    if review.status is ReviewStatus.decided:
        return Conflict("the review is already decided")
    if review.status is ReviewStatus.escalated and decision is DecisionKind.escalate:
        return Conflict("the review is already escalated")
    if decision in (DecisionKind.approve, DecisionKind.reject) and review.pr_number is None:
        return Conflict(f"'{decision.value}' needs a pull request and the review has none")
    # Not reached unless the review changed again between the two statements.
    return Conflict("the review changed while deciding; retry")


def run_action(
    *,
    session: Session,
    code_host: CodeHost,
    decision: Decision,
    pr_number: int | None,
    apv_code: str,
    retry_base_seconds: float,
    max_attempts: int,
) -> None:
    """Perform the decision's code-host action once and record the outcome; never raises."""
    with tracer.start_as_current_span(f"action {decision.action}") as span:
        span.set_attribute("hitl.action", decision.action)
        result = code_host.perform(
            action=decision.action,
            pr_number=pr_number,
            payload={
                "apv_code": apv_code,
                "decision_id": decision.id,
                "decision": decision.decision.value,
                "modifications": decision.modifications,
            },
        )
        outcome = "failed" if result.status.endswith("_failed") else result.status
        span.set_attribute("hitl.action.outcome", outcome)
        if outcome == "failed":
            span.set_status(trace.StatusCode.ERROR, result.error)
    metrics.actions.add(1, {"hitl.action": decision.action, "hitl.action.outcome": outcome})
    decision.action_attempts += 1
    decision.action_status = result.status
    decision.action_error = result.error
    if outcome == "failed" and decision.action_attempts < max_attempts:
        backoff = retry_base_seconds * 2 ** (decision.action_attempts - 1)
        decision.action_next_attempt_at = utcnow() + timedelta(seconds=backoff * random.uniform(0.8, 1.2))
    else:
        decision.action_next_attempt_at = None
    session.commit()


class ActionRetrier:
    """Background thread that retries failed actions with exponential backoff."""

    def __init__(
        self, *, sessions: sessionmaker, code_host: CodeHost, poll_seconds: float, base_seconds: float, max_attempts: int
    ):
        self._sessions = sessions
        self._code_host = code_host
        self._poll = poll_seconds
        self._base = base_seconds
        self._max = max_attempts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="action-retrier", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.retry_due()
            except Exception:  # noqa: BLE001 - e.g. the database is down; try again next poll
                log.warning("action retry pass failed", exc_info=True)

    def retry_due(self) -> int:
        with self._sessions() as session:
            token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
            try:
                due = session.scalars(
                    select(Decision)
                    .where(Decision.action_next_attempt_at.is_not(None), Decision.action_next_attempt_at <= utcnow())
                    .limit(20)
                ).all()
            finally:
                detach(token)
            for decision in due:
                ctx = extract({"traceparent": decision.traceparent} if decision.traceparent else {})
                with tracer.start_as_current_span("action retry", context=ctx) as span:
                    span.set_attribute("hitl.action.attempt", decision.action_attempts + 1)
                    run_action(
                        session=session,
                        code_host=self._code_host,
                        decision=decision,
                        pr_number=decision.review.pr_number,
                        apv_code=decision.review.apv_code,
                        retry_base_seconds=self._base,
                        max_attempts=self._max,
                    )
            return len(due)


def invalidate_stats(cache: Cache) -> None:
    cache.delete(STATS_KEY)


def _start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def compute_stats(*, session: Session, now: datetime | None = None) -> dict:
    now = now or utcnow()
    today = _start_of_day(now)
    week = today - timedelta(days=today.weekday())
    pending = dict.fromkeys((s.value for s in Severity), 0)
    for severity, count in session.execute(
        select(Review.severity, func.count()).where(Review.status.in_(WAITING)).group_by(Review.severity)
    ):
        pending[severity.value] = count
    by_kind = dict.fromkeys((k.value for k in DecisionKind), 0)
    for kind, count in session.execute(select(Decision.decision, func.count()).group_by(Decision.decision)):
        by_kind[kind.value] = count

    def count_since(model, since):
        return int(session.scalar(select(func.count()).select_from(model).where(model.created_at >= since)) or 0)

    latency = Decision.decision_latency_seconds
    n, avg, fastest, slowest = session.execute(
        select(func.count(latency), func.avg(latency), func.min(latency), func.max(latency))
    ).one()
    median = None
    if n:
        middle = session.scalars(select(latency).order_by(latency).offset((n - 1) // 2).limit(2 - n % 2)).all()
        median = sum(middle) / len(middle)
    return {
        "pending_by_severity": pending,
        "reviews_today": count_since(Review, today),
        "reviews_this_week": count_since(Review, week),
        "decisions_today": count_since(Decision, today),
        "decisions_this_week": count_since(Decision, week),
        "decisions_by_kind": by_kind,
        "review_time": {
            "average_seconds": float(avg) if avg is not None else None,
            "median_seconds": median,
            "fastest_seconds": fastest,
            "slowest_seconds": slowest,
        },
        "generated_at": now.isoformat(),
    }


def stats(*, session: Session, cache: Cache, ttl_seconds: int) -> dict:
    cached = cache.get(STATS_KEY, key_space="stats")
    if cached is not None:
        return json.loads(cached)
    value = compute_stats(session=session)
    cache.set(STATS_KEY, json.dumps(value), ttl_seconds=ttl_seconds)
    return value


class PendingGauge:
    """Reads the waiting queue for the pending gauges, at most once per refresh interval."""

    def __init__(self, sessions: sessionmaker, refresh_seconds: float):
        self._sessions = sessions
        self._refresh = refresh_seconds
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: dict[str, tuple[int, float]] = {}

    def read(self) -> dict[str, tuple[int, float]]:
        import time

        with self._lock:
            if time.monotonic() - self._at < self._refresh:
                return self._value
            token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
            try:
                with self._sessions() as session:
                    rows = session.execute(
                        select(Review.severity, func.count(), func.min(Review.created_at))
                        .where(Review.status.in_(WAITING))
                        .group_by(Review.severity)
                    ).all()
                now = datetime.now(UTC)
                value = {s.value: (0, 0.0) for s in Severity}
                for severity, count, oldest in rows:
                    if oldest is not None and oldest.tzinfo is None:
                        oldest = oldest.replace(tzinfo=UTC)
                    value[severity.value] = (count, (now - oldest).total_seconds() if oldest else 0.0)
                self._value = value
            except Exception:  # noqa: BLE001 - database down: report the last reading
                log.warning("pending gauge read failed", exc_info=False)
            finally:
                detach(token)
                self._at = time.monotonic()
            return self._value
