"""What the review service does, as plain functions over a session."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from datetime import datetime, timedelta

from opentelemetry import trace
from opentelemetry.propagate import inject
from sqlalchemy import Float, bindparam, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from app.cache import Cache
from app.config import Settings
from app.db import UTCDateTime, database_time, utcnow
from app.reviews import flows
from app.reviews.flows import NO_CODE_HOST, CodeHost, RetryPolicy
from app.reviews.models import (
    ACTION_FOR_DECISION,
    WAITING,
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
# The settings' defaults (app/config.py); callers pass the configured policy.
DEFAULT_POLICY = RetryPolicy(**{
    name: Settings.model_fields[field].default
    for name, field in (("lease_seconds", "action_lease_seconds"), ("base_seconds", "action_retry_base_seconds"),
                        ("max_attempts", "action_max_attempts"))
})


class Conflict(Exception):
    """The request is valid but the review's state forbids it (HTTP 409)."""


def waiting_seconds(review: Review, now: datetime | None = None) -> float:
    end = review.decided_at or now or utcnow()
    return max(0.0, (end - review.created_at).total_seconds())


def submit_review(*, session: Session, cache: Cache, data: ReviewCreate) -> tuple[Review, bool]:
    """Store a review. A repeat of an apv_code with the same payload returns the stored review;
    with a different payload it is a Conflict naming the fields that differ. (review, created?)"""
    existing = session.scalar(select(Review).where(Review.apv_code == data.apv_code))
    if existing is None:
        review = Review(**data.model_dump())
        session.add(review)
        try:
            session.commit()
        except IntegrityError:  # a concurrent submit of the same apv_code won
            session.rollback()
            existing = session.scalar(select(Review).where(Review.apv_code == data.apv_code))
            if existing is None:
                raise
    if existing is not None:
        differing = differing_fields(existing, data)
        if differing:
            raise Conflict(
                f"apv_code {data.apv_code} was submitted before with a different "
                + ", ".join(differing)
                + "; submit a changed APV under a new apv_code"
            )
        return existing, False
    metrics.reviews_created.add(
        1, {"hitl.review.severity": review.severity.value, "hitl.review.source": review.source}
    )
    span = trace.get_current_span()
    span.set_attribute("hitl.review.severity", review.severity.value)
    log.info("review submitted", extra={"hitl.review.id": review.id, "hitl.review.severity": review.severity.value})
    invalidate_stats(cache)
    return review, True


def differing_fields(review: Review, data: ReviewCreate) -> list[str]:
    """The submitted fields whose value differs from the stored review's, in schema order."""
    stored = ReviewCreate.model_validate(review, from_attributes=True).model_dump(mode="json")
    submitted = data.model_dump(mode="json")
    return [name for name in ReviewCreate.model_fields if stored[name] != submitted[name]]


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


class IdempotencyMismatch(Conflict):
    """The Idempotency-Key was used before for a different request (HTTP 409)."""


def request_digest(review_id: str, data: DecisionCreate) -> str:
    """What a decision request asked for, so a repeat of its Idempotency-Key can be compared."""
    body = json.dumps({"review_id": review_id, **data.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _decision_for_key(session: Session, *, reviewer: str, key: str, digest: str) -> Decision | None:
    """The decision an earlier request with this reviewer's key made, if it asked the same."""
    earlier = session.scalar(select(Decision).where(Decision.reviewer == reviewer, Decision.idempotency_key == key))
    if earlier is not None and earlier.request_digest != digest:
        raise IdempotencyMismatch(
            "Idempotency-Key was already used for a different request (another review or body); "
            "use a new key for a new decision"
        )
    return earlier


def decide(
    *,
    session: Session,
    cache: Cache,
    code_host: CodeHost,
    review_id: str,
    data: DecisionCreate,
    reviewer: str,
    policy: RetryPolicy = DEFAULT_POLICY,
    idempotency_key: str | None = None,
) -> tuple[Decision, bool]:
    """Record a decision with its action's outbox entry, then try the action once.
    Returns (decision, created?): a repeat of an Idempotency-Key returns the earlier decision."""
    digest = request_digest(review_id, data) if idempotency_key else None
    if idempotency_key:
        earlier = _decision_for_key(session, reviewer=reviewer, key=idempotency_key, digest=digest)
        if earlier is not None:
            return earlier, False
    now = utcnow()
    values = _decision_columns(
        data, reviewer=reviewer, now=now, code_host=code_host, policy=policy, idempotency_key=idempotency_key,
        digest=digest,
    )
    try:
        stored = _claim_and_store(session, review_id=review_id, kind=data.decision, values=values, now=now,
                                  policy=policy)
    except IntegrityError:  # a concurrent request with the same Idempotency-Key stored first
        session.rollback()
        earlier = _decision_for_key(session, reviewer=reviewer, key=idempotency_key, digest=digest) if idempotency_key else None
        if earlier is None:
            raise
        return earlier, False
    if stored is None:
        return _refusal(session, review_id, data.decision, reviewer, idempotency_key, digest), False
    decision, pr_number, apv_code = stored
    _report_decision(decision, review_id=review_id, cache=cache)
    _start_action(session, code_host=code_host, decision=decision, pr_number=pr_number, apv_code=apv_code, policy=policy)
    return decision, True


def _decision_columns(
    data: DecisionCreate, *, reviewer: str, now: datetime, code_host: CodeHost, policy: RetryPolicy,
    idempotency_key: str | None, digest: str | None,
) -> dict:
    """The decision row's own columns (the review's snapshot and the latency come with the claim).

    With no code host there is nothing to call: the action is stored as skipped with the
    decision instead of being recorded by a second write. Otherwise the decision's row is the
    action's outbox entry, claimed by this request as attempt 1 for one lease (flows.py)."""
    carrier: dict[str, str] = {}
    inject(carrier)
    skipped = None if code_host.configured else NO_CODE_HOST
    return {
        "id": new_id(),
        "decision": data.decision,
        "justification": data.justification,
        "confidence": data.confidence,
        "modifications": data.modifications,
        "reviewer": reviewer,
        "action": ACTION_FOR_DECISION[data.decision],
        "action_status": "skipped" if skipped else "pending",
        "action_attempts": 1,
        "action_clean_failures": 0,
        "action_error": skipped,
        # On the database's clock, which every replica's claim compares with (flows.py).
        "action_next_attempt_at": None if skipped else database_time(policy.lease_seconds),
        "traceparent": carrier.get("traceparent"),
        "idempotency_key": idempotency_key,
        "request_digest": digest,
        "created_at": now,
    }


def _claim_and_store(
    session: Session, *, review_id: str, kind: DecisionKind, values: dict, now: datetime, policy: RetryPolicy
) -> tuple[Decision, int | None, str] | None:
    """Claim the review and store the decision, committed: (decision, pr_number, apv_code), or
    None when the review's state does not allow this decision (nothing written)."""
    params = {"review_id": review_id, "now": now}
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql:
        # The lease's end is computed by the statement, on the database's clock (flows.py); the
        # object leaves it unloaded rather than marked as changed.
        lease = values.pop("action_next_attempt_at")
        columns = {f"d_{k}": v for k, v in values.items()}
        claimed = _claim_and_insert_on_postgresql(
            session, kind, params | columns | {"lease_seconds": None if lease is None else policy.lease_seconds}
        )
    else:
        claimed = _claim_on_sqlite(session, kind, params, now)
    if claimed is None:
        return None
    pr_number, apv_code, snapshot, latency = claimed
    decision = Decision(**values, review_id=review_id, **snapshot, decision_latency_seconds=latency)
    if postgresql:
        make_transient_to_detached(decision)  # its row exists already: later changes are UPDATEs
    session.add(decision)
    session.commit()
    return decision, pr_number, apv_code


def _claim_and_insert_on_postgresql(session: Session, kind: DecisionKind, params: dict):
    """One statement claims the review and inserts the decision: (pr_number, apv_code, snapshot,
    latency), or None."""
    row = session.execute(_claim_and_insert(kind), params).one_or_none()
    if row is None:
        return None
    pr_number, apv_code, *snapshot, latency = row
    return pr_number, apv_code, dict(zip(SNAPSHOT, snapshot, strict=True)), latency


def _claim_on_sqlite(session: Session, kind: DecisionKind, params: dict, now: datetime):
    """The claim returns the review; the decision is inserted by the commit: (pr_number,
    apv_code, snapshot, latency), or None."""
    review = session.scalars(
        _claim_returning_review(kind), params, execution_options={"synchronize_session": False}
    ).one_or_none()
    if review is None:
        return None
    snapshot = {column: getattr(review, column) for column in SNAPSHOT}
    return review.pr_number, review.apv_code, snapshot, max(0.0, (now - review.created_at).total_seconds())


def _report_decision(decision: Decision, *, review_id: str, cache: Cache) -> None:
    """The decision's metrics, the request span's attributes and log line; the stats go stale."""
    attrs = {"hitl.decision": decision.decision.value, "hitl.review.severity": decision.severity.value}
    metrics.decisions.add(1, attrs)
    metrics.decision_duration.record(decision.decision_latency_seconds, attrs)
    trace.get_current_span().set_attributes(attrs)
    log.info("decision recorded", extra={"hitl.decision": decision.decision.value, "hitl.review.id": review_id})
    invalidate_stats(cache)


def _start_action(
    session: Session, *, code_host: CodeHost, decision: Decision, pr_number: int | None, apv_code: str,
    policy: RetryPolicy,
) -> None:
    """Attempt the decision's code-host action once now (the outbox retries it), or record that it
    was skipped."""
    if decision.action_status == "skipped":  # a span (with no children, so never made current) says so in the trace
        outcome = {"hitl.action": decision.action, "hitl.action.outcome": "skipped"}
        tracer.start_span(f"action {decision.action}", attributes=outcome).end()
        metrics.actions.add(1, outcome)
    else:
        flows.attempt_now(
            session=session, code_host=code_host, decision=decision, pr_number=pr_number, apv_code=apv_code,
            policy=policy,
        )


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
        if column.name not in (*SNAPSHOT, "decision_latency_seconds")
    }
    source["review_id"] = bindparam("review_id", type_=columns.review_id.type)
    source["action_next_attempt_at"] = database_time(bindparam("lease_seconds", type_=Float))
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


def _refusal(
    session: Session, review_id: str, decision: DecisionKind, reviewer: str, key: str | None, digest: str | None
) -> Decision:
    """The claim matched nothing. A concurrent request with the same Idempotency-Key may have
    decided (its decision is returned); otherwise raise why: unknown (LookupError) or the state
    (Conflict)."""
    session.rollback()
    if key:
        earlier = _decision_for_key(session, reviewer=reviewer, key=key, digest=digest)
        if earlier is not None:
            return earlier
    review = session.get(Review, review_id)
    if review is None:
        raise LookupError(review_id)
    if review.status is ReviewStatus.decided:
        raise Conflict("the review is already decided")
    if review.status is ReviewStatus.escalated and decision is DecisionKind.escalate:
        raise Conflict("the review is already escalated")
    if decision in (DecisionKind.approve, DecisionKind.reject) and review.pr_number is None:
        raise Conflict(f"'{decision.value}' needs a pull request and the review has none")
    # Not reached unless the review changed again between the two statements.
    raise Conflict("the review changed while deciding; retry")


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
