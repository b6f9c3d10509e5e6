"""The action outbox and client retries, in process, on both database backends: what a crash
leaves is carried out later, concurrent workers never claim one action twice, a late attempt
cannot overwrite a newer one, failures back off and end in a recorded permanent failure, and an
Idempotency-Key makes a decision request safe to repeat. (tests/reviews/test_replicas.py runs the
same guarantees as real processes being killed.)"""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import db as app_db
from app.db import utcnow
from app.reviews import flows
from app.reviews.flows import RetryPolicy, claim_due, idempotency_key
from app.reviews.gauges import read_shared_state
from app.reviews.models import Decision
from harness.factories import decision_body
from harness.polling import wait_for
from tests.reviews.test_api import submit

POLICY = RetryPolicy(lease_seconds=30, base_seconds=0.05, max_attempts=3)


def decide(as_role, review, kind="approve", key=None, **body):
    headers = {"Idempotency-Key": key} if key else {}
    return as_role("reviewer").post(
        f"/api/v1/reviews/{review['id']}/decisions", json=decision_body(kind, **body), headers=headers
    )


def stored(app, decision_id) -> Decision:
    with app.state.db.sessionmaker() as session:
        return session.get(Decision, decision_id)


def crash_after_commit(monkeypatch):
    """The deciding process dies right after the decision's commit: its attempt never runs."""
    monkeypatch.setattr(flows, "attempt_now", lambda **_: None)


def expire_leases(app):
    with app.state.db.sessionmaker() as session:
        session.execute(
            update(Decision)
            .where(Decision.action_next_attempt_at.is_not(None))
            .values(action_next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


def run_outbox(app, policy=POLICY) -> int:
    worker = flows.OutboxWorker(sessions=app.state.db.sessionmaker, code_host=app.state.code_host,
                                policy=policy, poll_seconds=0)
    done = 0
    while worker.run_one():
        done += 1
    return done


def test_the_intent_is_committed_with_the_decision_and_claimed_by_the_request_for_one_lease(
        as_role, app, monkeypatch, code_host):
    crash_after_commit(monkeypatch)
    review = submit(as_role)
    before = utcnow()
    r = decide(as_role, review)
    assert r.status_code == 201
    row = stored(app, r.json()["id"])
    assert (row.action_status, row.action_attempts) == ("pending", 1)
    lease = app.state.settings.action_lease_seconds
    assert before + timedelta(seconds=lease) <= row.action_next_attempt_at <= utcnow() + timedelta(seconds=lease)
    with app.state.db.sessionmaker() as session:
        assert claim_due(session=session, policy=POLICY) is None  # the request's lease still holds
    assert code_host.performed == []


def test_a_crash_after_the_commit_is_carried_out_once_the_lease_ends(as_role, app, monkeypatch, code_host):
    crash_after_commit(monkeypatch)
    review = submit(as_role)
    decision_id = decide(as_role, review).json()["id"]
    expire_leases(app)
    assert run_outbox(app) == 1
    row = stored(app, decision_id)
    assert (row.action_status, row.action_attempts, row.action_next_attempt_at) == ("succeeded", 2, None)
    [call] = code_host.performed
    assert call.path == f"/pulls/{review['pr_number']}/merge"
    assert call.headers["idempotency-key"] == idempotency_key(decision_id, "merge")
    assert call.body["decision_id"] == decision_id
    assert run_outbox(app) == 0


def test_a_lost_answer_is_retried_with_the_same_key_and_performed_once(as_role, app, monkeypatch, code_host):
    """The code host merged but the process died before the answer was stored, and the state read
    before the retry does not show the merge yet (a host whose reads lag): the retry carries the
    same Idempotency-Key, so a host that honours it answers without merging again."""

    def dies_before_recording(*, code_host, decision, pr_number, **_):
        code_host.perform(action=decision.action, pr_number=pr_number, payload={"decision_id": decision.id},
                          key=idempotency_key(decision.id, decision.action))

    monkeypatch.setattr(flows, "attempt_now", dies_before_recording)
    decision_id = decide(as_role, submit(as_role)).json()["id"]
    assert stored(app, decision_id).action_status == "pending"  # the outcome was never written
    code_host.pulls.clear()  # the read before the retry sees an open pull request
    expire_leases(app)
    assert run_outbox(app) == 1
    assert stored(app, decision_id).action_status == "succeeded"
    assert (len(code_host.calls), len(code_host.reads), len(code_host.performed), code_host.replayed) == (2, 1, 1, 1)


def test_concurrent_workers_never_claim_the_same_action(as_role, app, monkeypatch):
    """Eight workers claim 24 due actions at once: each is claimed exactly once."""
    crash_after_commit(monkeypatch)
    ids = {decide(as_role, submit(as_role)).json()["id"] for _ in range(24)}
    expire_leases(app)
    barrier = threading.Barrier(8)
    claimed: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            while True:
                with app.state.db.sessionmaker() as session:
                    claim = claim_due(session=session, policy=POLICY)
                if claim is None:
                    return
                claimed.append(claim.decision_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(claimed) == sorted(ids)


def test_an_attempt_that_outlived_its_lease_does_not_overwrite_the_newer_one(as_role, app, monkeypatch):
    crash_after_commit(monkeypatch)
    decision_id = decide(as_role, submit(as_role)).json()["id"]
    expire_leases(app)
    with app.state.db.sessionmaker() as session:
        stale = claim_due(session=session, policy=POLICY)  # attempt 2 ...
    expire_leases(app)  # ... outlives its lease
    with app.state.db.sessionmaker() as session:
        newer = claim_due(session=session, policy=POLICY)  # attempt 3
        assert flows.attempt(session=session, code_host=app.state.code_host, claim=newer, policy=POLICY)
    with app.state.db.sessionmaker() as session:
        assert flows.attempt(session=session, code_host=app.state.code_host, claim=stale, policy=POLICY) is None
    row = stored(app, decision_id)
    assert (stale.attempt, newer.attempt, row.action_attempts, row.action_status) == (2, 3, 3, "succeeded")


def test_failures_back_off_then_fail_for_good_and_are_counted(as_role, app, code_host):
    code_host.fail_next = 10
    review = submit(as_role)
    r = decide(as_role, review)
    assert r.status_code == 201 and r.json()["action_status"] == "merge_failed"
    row = stored(app, r.json()["id"])
    assert row.action_attempts == 1 and row.action_next_attempt_at > utcnow()
    state = read_shared_state(app.state.db.sessionmaker)
    assert state.outbox_entries == 1 and state.failed["merge"] == 0
    for expected_attempt in (2, 3):
        expire_leases(app)
        assert run_outbox(app) == 1
        row = stored(app, r.json()["id"])
        assert (row.action_attempts, row.action_status) == (expected_attempt, "merge_failed")
    assert row.action_next_attempt_at is None  # max_attempts (3) reached: nothing is due any more
    expire_leases(app)
    assert run_outbox(app) == 0
    state = read_shared_state(app.state.db.sessionmaker)
    assert (state.outbox_entries, state.failed["merge"], state.failed["close"]) == (0, 1, 0)
    assert len(code_host.performed) == 0 and len(code_host.calls) == 3


def test_retry_failed_actions_gives_each_one_more_attempt(as_role, app, code_host, backend, monkeypatch, capsys):
    """The runbook's mitigation: `python -m app retry-failed-actions` once the code host works."""
    from app.__main__ import main
    from app.config import get_settings

    code_host.fail_next = 3
    policy = RetryPolicy(lease_seconds=30, base_seconds=0.01, max_attempts=1)
    failed = decide(as_role, submit(as_role)).json()["id"]  # attempt 1 fails; the settings allow 5
    with app.state.db.sessionmaker() as session:
        session.execute(update(Decision).where(Decision.id == failed).values(action_next_attempt_at=None))
        session.commit()  # as if that was its last attempt
    done = decide(as_role, submit(as_role), "reject").json()["id"]
    assert stored(app, done).action_status == "close_failed"
    expire_leases(app)
    code_host.fail_next = 0
    assert run_outbox(app, policy) == 1  # the close, still due; the merge is not
    assert stored(app, done).action_status == "succeeded"
    assert read_shared_state(app.state.db.sessionmaker).failed["merge"] == 1
    monkeypatch.setenv("DATABASE_URL", backend["database_url"])
    get_settings.cache_clear()
    try:
        main(["retry-failed-actions"])
    finally:
        get_settings.cache_clear()
    assert "1 failed action(s) due again" in capsys.readouterr().out
    assert run_outbox(app, policy) == 1
    row = stored(app, failed)
    assert (row.action_status, row.action_attempts, row.action_next_attempt_at) == ("succeeded", 2, None)
    assert read_shared_state(app.state.db.sessionmaker).failed["merge"] == 0


def test_backoff_doubles_within_jitter_and_is_capped():
    policy = RetryPolicy(lease_seconds=30, base_seconds=2, max_attempts=20)
    for attempt, seconds in ((1, 2), (2, 4), (3, 8), (4, 16)):
        assert 0.8 * seconds <= policy.backoff(attempt).total_seconds() <= 1.2 * seconds
    assert policy.backoff(19).total_seconds() <= 1.2 * flows.MAX_BACKOFF_SECONDS


def test_the_shared_state_reads_the_outbox_age_and_how_overdue_it_is(as_role, app, monkeypatch):
    crash_after_commit(monkeypatch)
    decide(as_role, submit(as_role))
    fresh = read_shared_state(app.state.db.sessionmaker)
    assert fresh.outbox_entries == 1 and fresh.outbox_overdue == 0 and fresh.outbox_oldest_age < 30
    later = read_shared_state(app.state.db.sessionmaker, now=utcnow() + timedelta(seconds=100))
    lease = app.state.settings.action_lease_seconds
    assert later.outbox_oldest_age == pytest.approx(100, abs=5)
    assert later.outbox_overdue == pytest.approx(100 - lease, abs=5)


# --- Idempotency-Key on decision requests ---

def test_a_repeat_with_the_same_key_and_body_returns_the_first_decision(as_role, app, code_host):
    review = submit(as_role)
    first = decide(as_role, review, key="retry-me-1")
    again = decide(as_role, review, key="retry-me-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert len(code_host.performed) == 1
    history = as_role("viewer").get(f"/api/v1/reviews/{review['id']}/decisions").json()["decisions"]
    assert [d["id"] for d in history] == [first.json()["id"]]
    # Without the key the same request is a second decision, refused by the review's state.
    assert decide(as_role, review).status_code == 409


def test_the_same_key_for_another_request_is_409_and_changes_nothing(as_role, app):
    review, other = submit(as_role), submit(as_role)
    assert decide(as_role, review, key="k-2").status_code == 201
    for refused in (decide(as_role, review, key="k-2", justification="A different reason, same key."),
                    decide(as_role, other, key="k-2")):
        assert refused.status_code == 409, refused.text
        assert "Idempotency-Key" in refused.json()["detail"]
    assert as_role("viewer").get(f"/api/v1/reviews/{other['id']}").json()["status"] == "pending"


def test_keys_are_scoped_to_the_reviewer(as_role, app, keys):
    """Two reviewers who happen to pick the same key make two decisions."""
    from app.auth.models import Role
    from app.auth.service import create_key

    review = submit(as_role)
    with app.state.db.sessionmaker() as session:
        _, second = create_key(session=session, name="second-reviewer", role=Role.reviewer)
    assert decide(as_role, review, "escalate", key="same").status_code == 201
    r = as_role("reviewer").post(f"/api/v1/reviews/{review['id']}/decisions", json=decision_body("approve"),
                                 headers={"Idempotency-Key": "same", "X-API-Key": second})
    assert r.status_code == 201 and r.json()["reviewer"] == "second-reviewer"


@pytest.mark.parametrize("key", ["", "x" * 256, "spaces are not allowed", "tab\tkey", "caf\u00e9"])
def test_a_malformed_key_is_422_naming_the_header(as_role, key):
    review = submit(as_role)
    r = as_role("reviewer").post(f"/api/v1/reviews/{review['id']}/decisions", json=decision_body(),
                                 headers={"Idempotency-Key": key.encode()})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert as_role("viewer").get(f"/api/v1/reviews/{review['id']}").json()["status"] == "pending"


def test_concurrent_repeats_of_one_key_make_one_decision(as_role, app, code_host):
    """A client retries before the first answer came: every copy gets the one decision."""
    review = submit(as_role)
    barrier = threading.Barrier(6)
    answers = []

    def send():
        barrier.wait()
        answers.append(decide(as_role, review, key="burst"))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(code_host.performed) == 1
    with app.state.db.sessionmaker() as session:
        assert len(session.scalars(select(Decision).where(Decision.review_id == review["id"])).all()) == 1


# --- a host that ignores Idempotency-Key: the state is read before a retry of an unknown outcome ---

ACTION_OF_KIND = {"approve": "merge", "reject": "close", "modify": "request_changes", "escalate": "escalate"}


@pytest.mark.parametrize("kind", ACTION_OF_KIND)
def test_an_action_done_whose_answer_was_lost_is_found_done_and_not_sent_again(
        as_role, app, monkeypatch, code_host, kind, caplog):
    """The code host acted but the deciding process died before storing the answer, and the host
    ignores the key: the retry reads the pull request's state, finds the action done, records it."""
    code_host.honour_idempotency_keys = False

    def dies_before_recording(*, code_host, decision, pr_number, apv_code, **_):
        code_host.perform(action=decision.action, pr_number=pr_number,
                          payload={"decision_id": decision.id, "apv_code": apv_code},
                          key=idempotency_key(decision.id, decision.action))

    monkeypatch.setattr(flows, "attempt_now", dies_before_recording)
    decision_id = decide(as_role, submit(as_role), kind).json()["id"]
    assert stored(app, decision_id).action_status == "pending"
    expire_leases(app)
    with caplog.at_level("INFO", logger="app.reviews.flows"):
        assert run_outbox(app) == 1
    row = stored(app, decision_id)
    assert (row.action_status, row.action_attempts) == ("succeeded", 2)
    assert code_host.effects_per_decision() == {decision_id: 1}
    assert (len(code_host.calls), len(code_host.reads)) == (1, 1)
    assert any("already taken effect" in r.getMessage() for r in caplog.records)


def test_an_action_never_sent_is_read_first_then_sent_once(as_role, app, monkeypatch, code_host):
    code_host.honour_idempotency_keys = False
    crash_after_commit(monkeypatch)
    decision_id = decide(as_role, submit(as_role), "modify").json()["id"]
    expire_leases(app)
    assert run_outbox(app) == 1
    assert stored(app, decision_id).action_status == "succeeded"
    assert code_host.effects_per_decision() == {decision_id: 1}
    assert (len(code_host.calls), len(code_host.reads)) == (1, 1)


def test_a_clean_failure_is_retried_without_a_read(as_role, app, code_host):
    """An HTTP error answer says nothing was done: the retry calls again straight away."""
    code_host.honour_idempotency_keys = False
    code_host.fail_next = 1
    decision_id = decide(as_role, submit(as_role)).json()["id"]
    assert stored(app, decision_id).action_status == "merge_failed"
    expire_leases(app)
    assert run_outbox(app) == 1
    assert stored(app, decision_id).action_status == "succeeded"
    assert (len(code_host.calls), len(code_host.reads)) == (2, 0)
    assert code_host.effects_per_decision() == {decision_id: 1}


def test_an_unknown_outcome_is_read_before_every_later_attempt(as_role, app, monkeypatch, code_host):
    """Attempt 1 never recorded its outcome (its process died), attempt 2 read, called and failed
    cleanly: attempt 3 must still read, since attempt 1's call may have taken effect late."""
    code_host.honour_idempotency_keys = False
    crash_after_commit(monkeypatch)
    decision_id = decide(as_role, submit(as_role), "reject").json()["id"]
    code_host.fail_next = 1
    policy = RetryPolicy(lease_seconds=30, base_seconds=0.05, max_attempts=5)
    for _ in range(2):
        expire_leases(app)
        assert run_outbox(app, policy) == 1
    assert stored(app, decision_id).action_status == "succeeded"
    assert (len(code_host.calls), len(code_host.reads)) == (2, 2)


# --- leases on the database's clock; any exception is a failed attempt; a quiet outage log ---

def test_a_replica_whose_clock_runs_ahead_cannot_take_a_live_lease(as_role, app, monkeypatch):
    """Leases are compared on the database's clock: a replica an hour ahead sees the deciding
    request's lease as live, and its own claim as lasting one lease of the database's time."""
    crash_after_commit(monkeypatch)
    decision_id = decide(as_role, submit(as_role)).json()["id"]
    ahead = lambda: utcnow() + timedelta(hours=1)  # noqa: E731
    for module in (flows, app_db):  # this process's clock, wherever the outbox might read it
        monkeypatch.setattr(module, "utcnow", ahead, raising=False)
    with app.state.db.sessionmaker() as session:
        assert claim_due(session=session, policy=POLICY) is None
    expire_leases(app)
    before = utcnow()
    with app.state.db.sessionmaker() as session:
        assert claim_due(session=session, policy=POLICY).decision_id == decision_id
    lease_end = stored(app, decision_id).action_next_attempt_at
    assert before + timedelta(seconds=POLICY.lease_seconds - 1) <= lease_end
    assert lease_end <= utcnow() + timedelta(seconds=POLICY.lease_seconds + 1)


def test_an_unexpected_exception_in_the_call_is_a_failed_attempt_within_the_limit(
        as_role, app, monkeypatch, code_host):
    def breaks(**_):
        raise RuntimeError("a bug, not a network error")

    monkeypatch.setattr(app.state.code_host, "perform", breaks)
    decision_id = decide(as_role, submit(as_role)).json()["id"]
    row = stored(app, decision_id)
    assert (row.action_status, row.action_error) == ("merge_failed", "RuntimeError")
    for _ in range(2):
        expire_leases(app)
        assert run_outbox(app) == 1
    row = stored(app, decision_id)
    assert (row.action_status, row.action_attempts, row.action_next_attempt_at) == ("merge_failed", 3, None)
    expire_leases(app)
    assert run_outbox(app) == 0


def test_a_database_outage_is_logged_once_with_its_trace_then_briefly_until_it_recovers(app, caplog):
    from sqlalchemy.exc import OperationalError

    worker = flows.OutboxWorker(sessions=app.state.db.sessionmaker, code_host=app.state.code_host,
                                policy=POLICY, poll_seconds=0.005)
    outage = [OperationalError("SELECT 1", {}, Exception("connection refused"))] * 30 + [ValueError("other")] * 30
    passes = []

    def run_one():
        passes.append(1)
        if outage:
            raise outage.pop(0)
        return False

    worker.run_one = run_one
    with caplog.at_level("INFO", logger="app.reviews.flows"):
        worker.start()
        try:
            wait_for("the outage to end", lambda: not outage and len(passes) > 62, timeout=30, interval=0.01)
        finally:
            worker.stop()
    records = [r for r in caplog.records if r.name == "app.reviews.flows"]
    assert sum(1 for r in records if r.exc_info) == 1, [r.getMessage() for r in records]
    assert len(records) == 3, [r.getMessage() for r in records]  # the trace, the change to ValueError, recovery
    assert "ValueError" in records[1].getMessage()
    assert "recovered" in records[2].getMessage() and "60" in records[2].getMessage()


def test_a_deciding_replica_whose_clock_runs_behind_writes_a_lease_of_the_databases_time(
        as_role, app, monkeypatch):
    """Its lease would otherwise be over when written, and any replica would take the action over
    while its own attempt is still running."""
    from app.reviews import service

    crash_after_commit(monkeypatch)
    monkeypatch.setattr(service, "utcnow", lambda: utcnow() - timedelta(hours=1))
    decide(as_role, submit(as_role))
    with app.state.db.sessionmaker() as session:
        assert claim_due(session=session, policy=POLICY) is None


def test_a_failed_state_read_sends_nothing_and_the_next_attempt_reads_again(as_role, app, monkeypatch, code_host):
    code_host.honour_idempotency_keys = False
    crash_after_commit(monkeypatch)
    decision_id = decide(as_role, submit(as_role), "escalate").json()["id"]
    code_host.fail_for(60)
    expire_leases(app)
    assert run_outbox(app) == 1
    row = stored(app, decision_id)
    assert (row.action_status, row.action_error) == ("escalate_failed", "state read: HTTP 503")
    assert (len(code_host.calls), len(code_host.reads)) == (0, 1)
    code_host.failing_until = 0.0
    expire_leases(app)
    assert run_outbox(app) == 1
    assert stored(app, decision_id).action_status == "succeeded"
    assert (len(code_host.calls), len(code_host.reads)) == (1, 2)
    assert code_host.effects_per_decision() == {decision_id: 1}
