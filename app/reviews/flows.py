"""What happens after a decision: the code-host action, carried out through an outbox.

The decision's row is the outbox entry. It is written with the decision, in the same statement,
already claimed by the deciding request for one lease (`action_attempts = 1`,
`action_next_attempt_at = now + lease`, on the database's clock like every due time here, so
replicas with skewed clocks agree on it). The request then tries the action at once, for fast
feedback. If that process dies, the lease runs out and any replica's `OutboxWorker` claims the
row again (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite runs one writer at a time, so its claim
statement is atomic as it is). Every claim adds one to `action_attempts`, and an attempt writes its
outcome only while the row still carries its number: an attempt that outlived its lease cannot
overwrite a newer one. Each attempt ends within a deadline shorter than the lease (CodeHost).

Exactly one effect: the call carries an `Idempotency-Key` derived from the decision, so a code
host that honours it performs a retried action (a lost response, a lease that ran out) once. For
one that ignores it, an attempt that follows one of unknown outcome (anything but a failure known
to have done nothing, counted in `action_clean_failures`) reads the state first and does not call
if the action has taken effect.

The code host is called over HTTP with httpx (instrumented: the trace context travels with it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagate import extract
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from app.db import database_time
from app.reviews.models import Decision, Review
from app.telemetry import metrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("hitl-review")

NO_CODE_HOST = "no code host configured"
# A failed attempt waits base * 2^(attempt-1) (±20%), at most this long, before the next.
MAX_BACKOFF_SECONDS = 300.0
# While the outbox's passes keep failing the same way, a line at most this often.
FAILURE_REPORT_SECONDS = 60.0
# How long a stopping worker waits, beyond the code host's deadline, for an attempt's outcome write.
OUTCOME_WRITE_SECONDS = 1.0


@dataclass(frozen=True)
class ActionResult:
    status: str  # "succeeded", "skipped" or "<action>_failed"
    error: str | None = None
    # A failure known to have changed nothing: the code host answered with an error, or no call
    # was sent. Any other failure (a timeout or a cut connection after sending) may have acted.
    nothing_done: bool = False
    # hitl.action.state_check: "not_needed" (no earlier attempt of unknown outcome); else the
    # state was read and the action had not taken effect ("not_done": sent), or had
    # ("already_done": not sent again), or the read failed ("read_failed": not sent).
    state_check: str = "not_needed"

    @property
    def outcome(self) -> str:
        return "failed" if self.status.endswith("_failed") else self.status


@dataclass(frozen=True)
class RetryPolicy:
    lease_seconds: float
    base_seconds: float
    max_attempts: int

    def backoff(self, attempt: int) -> timedelta:
        seconds = min(MAX_BACKOFF_SECONDS, self.base_seconds * 2 ** (attempt - 1))
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def idempotency_key(decision_id: str, action: str) -> str:
    """The key the code host sees: the same for every attempt of one decision's action."""
    return f"hitl-{decision_id}-{action}"


class CodeHost:
    """The code host's HTTP API. Every attempt has one wall-clock deadline, `timeout_seconds`
    (which the settings keep shorter than the lease): httpx's own timeouts bound each phase, and a
    read timeout restarts with every chunk, so a host that trickles its answer would keep a call
    alive far past the lease, while another replica takes the action over and calls again. The
    attempt runs on an event loop of its own so the deadline can cancel it wherever it is.

    Not every code host honours `Idempotency-Key` (GitHub's merge API does not), so an attempt
    that follows one of unknown outcome first reads whether the action has taken effect, within
    the same deadline, and does not send it again if it has: a merged or closed pull request, a
    change request or an escalation carrying the decision's id."""

    def __init__(self, base_url: str | None, token: str | None, timeout_seconds: float):
        self.configured = bool(base_url)
        self.timeout_seconds = timeout_seconds
        self._base_url = base_url.rstrip("/") if base_url else None
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Made once: building a TLS context (loading the CA bundle) costs ~0.1 s, a client per
        # call with a shared one ~2 ms.
        self._tls = httpx.create_ssl_context() if base_url else None

    def perform(
        self, *, action: str, pr_number: int | None, payload: dict, key: str, check_first: bool = False,
    ) -> ActionResult:
        """One attempt. With check_first, read the state first and skip the call if the action
        has already taken effect."""
        if self._base_url is None:
            return ActionResult("skipped", NO_CODE_HOST)
        if action == "escalate":
            path = "/escalations"
        elif pr_number is None:
            return ActionResult("skipped", "the review has no pull request")
        else:
            path = f"/pulls/{pr_number}/{action}"
        progress = {"sent": False, "state_check": "not_needed"}
        failed = f"{action}_failed"
        try:
            response = asyncio.run(self._attempt(action, path, pr_number, payload, key, check_first, progress))
        except TimeoutError:
            log.warning("code host %s: no answer within %gs", action, self.timeout_seconds)
            return ActionResult(failed, f"no answer within {self.timeout_seconds:g}s",
                                nothing_done=not progress["sent"], state_check=progress["state_check"])
        except httpx.HTTPStatusError as exc:  # only the state read raises for its status
            log.warning("code host %s: reading the state answered %s", action, exc.response.status_code)
            return ActionResult(failed, f"state read: HTTP {exc.response.status_code}", nothing_done=True,
                                state_check=progress["state_check"])
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # a fresh connection: nothing sent
            log.warning("code host %s failed: %s", action, type(exc).__name__)
            return ActionResult(failed, type(exc).__name__, nothing_done=True, state_check=progress["state_check"])
        except httpx.HTTPError as exc:
            log.warning("code host %s failed: %s", action, type(exc).__name__)
            return ActionResult(failed, type(exc).__name__, nothing_done=not progress["sent"],
                                state_check=progress["state_check"])
        if response is None:
            return ActionResult("succeeded", state_check="already_done")
        if response.is_success:
            return ActionResult("succeeded", state_check=progress["state_check"])
        log.warning("code host %s answered %s", action, response.status_code)
        return ActionResult(failed, f"HTTP {response.status_code}", nothing_done=True,
                            state_check=progress["state_check"])

    async def _attempt(
        self, action: str, path: str, pr_number: int | None, payload: dict, key: str, check_first: bool,
        progress: dict,
    ) -> httpx.Response | None:
        """The call's answer, or None when the state read found the action done."""
        async with asyncio.timeout(self.timeout_seconds), self._client() as client:
            if check_first:
                progress["state_check"] = "read_failed"  # until the read is answered
                if await self._took_effect(client, action, pr_number, payload["decision_id"]):
                    progress["state_check"] = "already_done"
                    return None
                progress["state_check"] = "not_done"
            progress["sent"] = True
            return await client.post(path, json=payload, headers={"Idempotency-Key": key})

    async def _took_effect(self, client: httpx.AsyncClient, action: str, pr_number: int | None,
                           decision_id: str) -> bool:
        if action == "escalate":
            response = await client.get("/escalations", params={"decision_id": decision_id})
            return bool(response.raise_for_status().json())
        pull = (await client.get(f"/pulls/{pr_number}")).raise_for_status().json()
        if action == "merge":
            return bool(pull.get("merged"))
        if action == "close":
            return pull.get("state") == "closed"
        return decision_id in pull.get("changes_requested_by_decision", [])

    def _client(self) -> httpx.AsyncClient:
        # A client per attempt: its connections belong to the event loop of that attempt.
        return httpx.AsyncClient(base_url=self._base_url, headers=self._headers, timeout=self.timeout_seconds,
                                 verify=self._tls)


@dataclass(frozen=True)
class Claim:
    """One attempt at one decision's action: what the call needs, and the attempt's number."""

    decision_id: str
    action: str
    attempt: int
    decision: str
    modifications: dict | None
    pr_number: int | None
    apv_code: str
    traceparent: str | None
    # An earlier attempt may have taken effect without recording it: read the state first.
    outcome_unknown: bool = False


def attempt(*, session: Session, code_host: CodeHost, claim: Claim, policy: RetryPolicy) -> ActionResult | None:
    """Perform a claimed attempt and record its outcome. Returns the outcome, or None when a newer
    attempt holds the row (this one outlived its lease; the code host saw the same key). Raises
    only if the outcome cannot be written: the lease then runs out and the action is tried again."""
    with tracer.start_as_current_span(f"action {claim.action}") as span:
        span.set_attribute("hitl.action", claim.action)
        span.set_attribute("hitl.action.attempt", claim.attempt)
        try:
            result = code_host.perform(
                action=claim.action,
                pr_number=claim.pr_number,
                payload={
                    "apv_code": claim.apv_code,
                    "decision_id": claim.decision_id,
                    "decision": claim.decision,
                    "modifications": claim.modifications,
                },
                key=idempotency_key(claim.decision_id, claim.action),
                check_first=claim.outcome_unknown,
            )
        except Exception as exc:  # noqa: BLE001 - a bug must not bypass the attempt limit
            log.exception("action %s of decision %s: attempt %d raised", claim.action, claim.decision_id, claim.attempt)
            result = ActionResult(f"{claim.action}_failed", type(exc).__name__)
        span.set_attribute("hitl.action.outcome", result.outcome)
        span.set_attribute("hitl.action.state_check", result.state_check)
        if result.state_check == "already_done":
            log.info("action %s of decision %s had already taken effect (attempt %d found it so); not sent again",
                     claim.action, claim.decision_id, claim.attempt)
        if result.outcome == "failed":
            span.set_status(trace.StatusCode.ERROR, result.error)
    metrics.actions.add(1, {"hitl.action": claim.action, "hitl.action.outcome": result.outcome})
    next_at = None
    if result.outcome == "failed":
        if claim.attempt < policy.max_attempts:
            next_at = database_time(policy.backoff(claim.attempt).total_seconds())
        else:
            log.error(
                "action %s of decision %s failed for good after %d attempts: %s",
                claim.action, claim.decision_id, claim.attempt, result.error,
            )
    written = session.execute(
        update(Decision)
        .where(Decision.id == claim.decision_id, Decision.action_attempts == claim.attempt)
        .values(
            action_status=result.status, action_error=result.error, action_next_attempt_at=next_at,
            action_clean_failures=Decision.action_clean_failures + (1 if result.nothing_done else 0),
        ),
        execution_options={"synchronize_session": False},
    ).rowcount
    session.commit()
    if not written:
        log.warning("attempt %d of decision %s outlived its lease; a newer attempt owns it",
                    claim.attempt, claim.decision_id)
        return None
    return result


def attempt_now(
    *, session: Session, code_host: CodeHost, decision: Decision, pr_number: int | None, apv_code: str,
    policy: RetryPolicy,
) -> None:
    """The deciding request's own first attempt (the row was inserted claimed as attempt 1).
    The decision object is updated to what was stored; a failure to store it is logged, not raised:
    the decision is committed and the outbox carries the action out when the lease ends."""
    claim = Claim(
        decision_id=decision.id, action=decision.action, attempt=decision.action_attempts,
        decision=decision.decision.value, modifications=decision.modifications,
        pr_number=pr_number, apv_code=apv_code, traceparent=decision.traceparent,
    )
    try:
        result = attempt(session=session, code_host=code_host, claim=claim, policy=policy)
    except Exception:  # noqa: BLE001 - e.g. the database went away after the decision was committed
        session.rollback()
        log.warning("could not record the action of decision %s; the outbox retries it", decision.id, exc_info=True)
        return
    if result is not None:
        set_committed_value(decision, "action_status", result.status)
        set_committed_value(decision, "action_error", result.error)


def claim_due(*, session: Session, policy: RetryPolicy) -> Claim | None:
    """Claim the action that has been due longest, for one lease; None when nothing is due.
    Committed before returning: the lease, not a held transaction, keeps other replicas off it.
    Due times and leases are on the database's clock, so a replica whose clock is ahead cannot
    take a live lease."""
    due = (
        select(Decision.id)
        .where(Decision.action_next_attempt_at.is_not(None), Decision.action_next_attempt_at <= database_time())
        .order_by(Decision.action_next_attempt_at)
        .limit(1)
    )
    if session.get_bind().dialect.name == "sqlite":
        # One writer: the single UPDATE is atomic; a SELECT first would only add a lock upgrade.
        target = Decision.id.in_(due.scalar_subquery())
    else:
        # Lock first, then update by id. One `UPDATE … WHERE id IN (SELECT … SKIP LOCKED LIMIT 1)`
        # can update several rows on PostgreSQL: a concurrent update makes it re-check the join,
        # which re-runs the subquery and picks another row (seen in CI with eight workers).
        decision_id = session.execute(due.with_for_update(skip_locked=True)).scalar_one_or_none()
        if decision_id is None:
            session.rollback()
            return None
        target = Decision.id == decision_id
    row = session.execute(
        update(Decision)
        .where(target)
        .values(
            action_attempts=Decision.action_attempts + 1,
            action_next_attempt_at=database_time(policy.lease_seconds),
        )
        .returning(
            Decision.id, Decision.action, Decision.action_attempts, Decision.decision, Decision.modifications,
            Decision.traceparent, Decision.review_id, Decision.action_clean_failures,
        ),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    if row is None:
        session.rollback()
        return None
    pr_number, apv_code = session.execute(
        select(Review.pr_number, Review.apv_code).where(Review.id == row.review_id)
    ).one()
    session.commit()
    return Claim(
        decision_id=row.id, action=row.action, attempt=row.action_attempts, decision=row.decision.value,
        modifications=row.modifications, pr_number=pr_number, apv_code=apv_code, traceparent=row.traceparent,
        outcome_unknown=row.action_attempts - 1 > row.action_clean_failures,
    )


def failed_for_good():
    """The condition of actions that failed on every attempt: nothing due, status <action>_failed."""
    return Decision.action_next_attempt_at.is_(None) & Decision.action_status.like("%\\_failed", escape="\\")


def retry_failed(*, session: Session) -> int:
    """Make every action that failed for good due now (an operator's `retry-failed-actions`, once
    the code host works again): each gets one more attempt. Returns how many."""
    count = session.execute(
        update(Decision).where(failed_for_good()).values(action_next_attempt_at=database_time()),
        execution_options={"synchronize_session": False},
    ).rowcount
    session.commit()
    return count


class OutboxWorker:
    """A thread in every replica that carries out due actions: those whose deciding request failed
    (retried with backoff) and those whose attempt's lease ran out (its process died)."""

    def __init__(self, *, sessions: sessionmaker, code_host: CodeHost, policy: RetryPolicy, poll_seconds: float):
        self._sessions = sessions
        self._code_host = code_host
        self._policy = policy
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="action-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the attempt in flight: it ends within the code host's deadline, and gets a second
        more to write its outcome. One that cannot is taken over by another replica after its lease."""
        self._stop.set()
        self._thread.join(timeout=self._code_host.timeout_seconds + OUTCOME_WRITE_SECONDS)

    def _loop(self) -> None:
        # While the database is down every pass fails the same way: its trace is logged once (each
        # record is exported), then a line when the error changes or a minute has passed, and one
        # when a pass works again.
        failing_since = last_report = 0.0
        failures, last_error = 0, ""
        while not self._stop.wait(self._poll):
            try:
                while not self._stop.is_set() and self.run_one():
                    pass
            except Exception as exc:  # noqa: BLE001 - e.g. the database is down; try again next poll
                now, error = time.monotonic(), type(exc).__name__
                failures += 1
                if failures == 1:
                    failing_since = last_report = now
                    log.warning("action outbox pass failed; retrying every %gs", self._poll, exc_info=True)
                elif error != last_error or now - last_report >= FAILURE_REPORT_SECONDS:
                    last_report = now
                    log.warning("action outbox still failing after %.0fs (%d passes), now with %s",
                                now - failing_since, failures, error)
                last_error = error
                continue
            if failures:
                log.info("action outbox recovered after %.0fs (%d failed passes)",
                         time.monotonic() - failing_since, failures)
                failures, last_error = 0, ""

    def run_one(self) -> bool:
        """Claim and perform one due action; False when none was due."""
        with self._sessions() as session:
            with suppress_instrumentation():  # the poll is no request: no span per claim query
                claim = claim_due(session=session, policy=self._policy)
            if claim is None:
                return False
            ctx = extract({"traceparent": claim.traceparent} if claim.traceparent else {})
            with tracer.start_as_current_span("action retry", context=ctx) as span:
                span.set_attribute("hitl.action.attempt", claim.attempt)
                attempt(session=session, code_host=self._code_host, claim=claim, policy=self._policy)
            return True
