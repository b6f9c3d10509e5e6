"""Several replicas on one PostgreSQL, killed and stopped mid-flight: every acknowledged decision
is stored, every decision's action takes effect on the code host exactly once, and none is left
pending.

Real processes (`python -m app serve`), a real PostgreSQL, and the code-host stand-in, which here
ignores Idempotency-Key (as GitHub's merge API does) and counts effects, the state changes on the
pull requests: the key cannot hide a second call, only the service's read of the state before an
uncertain retry prevents it. The stand-in can hold its answers back so that a kill lands after the
host acted but before the service read the answer, the case that read must cover. Clients retry a
failed request on another replica with the same Idempotency-Key, as the API documents. The
figures of each run are printed (pytest -s) for docs and closing notes.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from app.auth.models import Role
from app.db import prepare_url
from app.reviews.models import Decision
from harness.app_process import AppProcess
from harness.code_host import CodeHostServer
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.factories import decision_body, review_body
from harness.polling import wait_for

LEASE_SECONDS = 3.0
KINDS = ("approve", "reject", "modify", "escalate")


class Replicas:
    """Replicas of the service on one database, and a client that spreads requests over the live
    ones, retrying a request that got no answer on the next replica with the same key."""

    def __init__(self, *, database_url: str, code_host: CodeHostServer, tmp_path, keys: dict[str, str]):
        self.env = {
            "APP_ENV": "test",
            "OTEL_SDK_DISABLED": "true",
            "DATABASE_URL": database_url,
            "CODE_HOST_URL": code_host.url,
            "CODE_HOST_TOKEN": "replica-test-code-host-token",
            "CODE_HOST_TIMEOUT_SECONDS": "2",
            "ACTION_LEASE_SECONDS": str(LEASE_SECONDS),
            "ACTION_RETRY_POLL_SECONDS": "0.2",
            "ACTION_RETRY_BASE_SECONDS": "0.3",
            "ACTION_MAX_ATTEMPTS": "12",
            "DB_POOL_SIZE": "12",
        }
        self.tmp_path = tmp_path
        self.keys = keys
        self.live: list[AppProcess] = []
        self.everyone: list[AppProcess] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.client = httpx.Client(timeout=15)
        self.retries = 0

    def start(self) -> AppProcess:
        app = AppProcess(env=self.env, log_path=self.tmp_path / f"replica-{len(self.everyone)}.log")
        with self._lock:
            self.live.append(app)
            self.everyone.append(app)
        return app

    def remove(self, app: AppProcess) -> None:
        with self._lock:
            self.live.remove(app)

    def next_replica(self) -> AppProcess:
        with self._lock:
            return self.live[next(self._turn) % len(self.live)]

    def decide(self, review: dict, kind: str, deadline_seconds: float = 60) -> dict:
        """One decision, acknowledged: retried with the same Idempotency-Key until a replica answers."""
        key = f"test-{review['id']}"
        body = decision_body(kind)
        headers = {"X-API-Key": self.keys["reviewer"], "Idempotency-Key": key}
        deadline = time.monotonic() + deadline_seconds
        while True:
            replica = self.next_replica()
            try:
                r = self.client.post(f"{replica.url}/api/v1/reviews/{review['id']}/decisions",
                                     json=body, headers=headers)
                if r.status_code in (200, 201):
                    return r.json()
                assert r.status_code >= 500, f"{r.status_code}: {r.text}"  # 4xx is a bug here
            except httpx.TransportError:
                pass  # the replica died or is stopping: try the next one
            with self._lock:
                self.retries += 1
            assert time.monotonic() < deadline, f"no replica acknowledged the decision on {review['id']}"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()
        for app in self.everyone:
            if app.proc.poll() is None:
                app.stop()


@pytest.fixture
def cluster(postgres_admin_url, tmp_path):
    database_url = fresh_postgres_database(postgres_admin_url)
    keys = migrated_with_keys(database_url, {"pipeline": Role.pipeline, "reviewer": Role.reviewer})
    code_host = CodeHostServer(honour_idempotency_keys=False)
    replicas = Replicas(database_url=database_url, code_host=code_host, tmp_path=tmp_path, keys=keys)
    engine = create_engine(prepare_url(database_url))
    try:
        yield replicas, code_host, engine
    finally:
        replicas.close()
        code_host.close()
        engine.dispose()


def submit_reviews(replicas: Replicas, n: int) -> list[dict]:
    app = replicas.live[0]
    headers = {"X-API-Key": replicas.keys["pipeline"]}
    reviews = []
    for _ in range(n):
        r = replicas.client.post(f"{app.url}/api/v1/reviews", json=review_body(), headers=headers)
        assert r.status_code == 201, r.text
        reviews.append(r.json())
    return reviews


def outbox_entries(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Decision).where(
            Decision.action_next_attempt_at.is_not(None)))


def check_exactly_once(engine, code_host: CodeHostServer, reviews: list[dict], acknowledged: list[dict]) -> dict:
    """Every acknowledged decision stored, one decision per review, every action took effect once
    (calls may be more: failed ones, and those whose answer was lost)."""
    wait_for("the outbox to carry out every action", lambda: outbox_entries(engine) == 0,
             timeout=4 * LEASE_SECONDS + 30)
    with engine.connect() as conn:
        rows = conn.execute(select(Decision.id, Decision.review_id, Decision.action, Decision.action_status,
                                   Decision.action_attempts)).all()
    stored = {row.id: row for row in rows}
    assert len(rows) == len(reviews), "one decision per review"
    assert {row.review_id for row in rows} == {r["id"] for r in reviews}
    assert {d["id"] for d in acknowledged} <= set(stored), "an acknowledged decision was lost"
    assert Counter(row.action_status for row in rows) == {"succeeded": len(reviews)}
    effects = code_host.effects_per_decision()
    calls = code_host.calls_per_decision()
    assert set(effects) == set(stored), "an action never took effect, or one nobody decided did"
    duplicates = sum(n - 1 for n in effects.values())
    assert duplicates == 0, f"{duplicates} duplicate effects: {[d for d, n in effects.items() if n > 1]}"
    assert code_host.replayed == 0  # the key did not help
    return {
        "decisions": len(rows),
        "code-host calls": len(code_host.calls),
        "effects": len(code_host.effects),
        "duplicate effects": duplicates,
        "state reads": len(code_host.reads),
        "decisions with more than one call": sum(1 for n in calls.values() if n > 1),
        "actions retried or taken over (attempts > 1)": sum(1 for row in rows if row.action_attempts > 1),
        # A later attempt made no call: its read found the action done.
        "found done by a state read": sum(1 for row in rows if row.action_attempts > 1 and calls[row.id] == 1),
    }


def test_kills_and_a_graceful_stop_lose_nothing_and_double_nothing(cluster):
    """300 decisions over three replicas: one SIGKILLed while its actions wait for the code host's
    answer (a replacement starts, as a supervisor would), another stopped with SIGTERM."""
    replicas, code_host, engine = cluster
    for _ in range(3):
        replicas.start()
    reviews = submit_reviews(replicas, 300)
    acknowledged: list[dict] = []
    done = threading.Event()
    killed: dict[str, object] = {}

    def decide(i_review):
        i, review = i_review
        acknowledged.append(replicas.decide(review, KINDS[i % len(KINDS)]))

    def chaos():
        wait_for("100 decisions", lambda: len(acknowledged) >= 100 or done.is_set(), timeout=120, interval=0.01)
        victim = replicas.live[1]
        code_host.hold_answers()  # every client thread's request now waits in the action phase
        wait_for("8 actions in flight", lambda: code_host.held >= 8, timeout=30, interval=0.01)
        with replicas._lock:
            killed["in flight"] = code_host.held
        replicas.remove(victim)
        victim.kill()
        code_host.release_answers()
        replicas.start()  # the replacement
        wait_for("200 decisions", lambda: len(acknowledged) >= 200 or done.is_set(), timeout=120, interval=0.01)
        stopping = replicas.live[1]
        replicas.remove(stopping)
        killed["sigterm seconds"] = round(stopping.stop(), 2)

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(decide, enumerate(reviews)))
    done.set()
    chaos_thread.join(120)
    assert not chaos_thread.is_alive()
    assert len(acknowledged) == 300
    figures = check_exactly_once(engine, code_host, reviews, acknowledged)
    figures |= {"SIGKILLs": 1, "SIGTERMs": 1, "actions in flight (acted on, answer held) at the SIGKILL": killed["in flight"],
                "client retries on another replica": replicas.retries,
                "SIGTERM shutdown seconds": killed["sigterm seconds"]}
    print("\nreplicas:", figures)
    # The kill landed after the host acted and before the answer was read: those actions were
    # taken over after their lease, and the new attempt read the state instead of acting again.
    assert figures["actions retried or taken over (attempts > 1)"] > 0
    assert figures["found done by a state read"] > 0


def test_a_failing_code_host_is_retried_with_backoff_until_each_action_is_done_once(cluster):
    """The code host answers 503 for a while, and a replica is killed meanwhile: the failures are
    recorded (`<action>_failed`), retried with backoff, and in the end each action is done once."""
    replicas, code_host, engine = cluster
    for _ in range(3):
        replicas.start()
    reviews = submit_reviews(replicas, 60)
    code_host.fail_for(6)
    with ThreadPoolExecutor(6) as pool:
        acknowledged = list(pool.map(lambda ir: replicas.decide(ir[1], KINDS[ir[0] % 4]), enumerate(reviews)))
    failed_statuses = {d["action_status"] for d in acknowledged} - {"succeeded"}
    assert failed_statuses and failed_statuses <= {"merge_failed", "close_failed", "request_changes_failed",
                                                   "escalate_failed"}, failed_statuses
    with engine.connect() as conn:  # recorded while the code host still fails, with a retry due
        waiting = conn.scalar(select(func.count()).select_from(Decision).where(
            Decision.action_status.like("%\\_failed", escape="\\"), Decision.action_next_attempt_at.is_not(None)))
    assert waiting > 0
    victim = replicas.live[0]
    replicas.remove(victim)
    victim.kill()
    figures = check_exactly_once(engine, code_host, reviews, acknowledged)
    print("\nfailing code host:", figures | {"SIGKILLs": 1, "failed calls": len(code_host.calls) - len(code_host.effects)})
    assert figures["code-host calls"] > figures["effects"]  # there were failed attempts
