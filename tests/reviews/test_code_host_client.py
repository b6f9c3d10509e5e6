"""The code-host client on its own, against the stand-in: every attempt ends within its deadline,
whatever the host does with the connection."""

import time

import httpx
import pytest

from app.reviews.flows import CodeHost
from harness.code_host import CodeHostServer

DEADLINE_SECONDS = 2.0
# Room for the client's own start and teardown beyond its deadline.
SLACK_SECONDS = 0.5


def test_an_answer_trickled_past_the_deadline_ends_the_attempt_in_time(code_host):
    """One byte a second restarts a per-read timeout every time; only a total deadline ends it."""
    code_host.trickle_seconds = 1.0
    client = CodeHost(code_host.url, "test-code-host-token", DEADLINE_SECONDS)
    started = time.monotonic()
    result = client.perform(action="merge", pr_number=7, payload={"decision_id": "d-1"}, key="hitl-d-1-merge")
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE_SECONDS + SLACK_SECONDS, f"the attempt took {elapsed:.1f}s"
    assert result.outcome == "failed" and result.status == "merge_failed"
    assert not result.nothing_done  # it was sent: the next attempt reads the state first
    assert len(code_host.calls) == 1


# --- the stand-in itself: what the proofs of "exactly once" count must be able to fail ---

def post_twice(code_host, path: str, decision_id: str) -> list[int]:
    headers = {"Idempotency-Key": f"hitl-{decision_id}"}
    return [httpx.post(f"{code_host.url}{path}", json={"decision_id": decision_id}, headers=headers).status_code
            for _ in range(2)]


@pytest.mark.parametrize("honour", [True, False])
def test_the_stand_in_records_every_call_and_every_effect(honour):
    server = CodeHostServer(honour_idempotency_keys=honour)
    try:
        assert post_twice(server, "/pulls/5/request_changes", "d-5") == [200, 200]
        assert post_twice(server, "/escalations", "d-6") == [200, 200]
        assert len(server.calls) == 4
        expected = 1 if honour else 2
        assert server.effects_per_decision() == {"d-5": expected, "d-6": expected}
        assert server.replayed == (2 if honour else 0)
        pull = httpx.get(f"{server.url}/pulls/5").json()
        assert pull == {"number": 5, "state": "open", "merged": False,
                        "changes_requested_by_decision": ["d-5"] * expected}
        assert len(httpx.get(f"{server.url}/escalations", params={"decision_id": "d-6"}).json()) == expected
        assert httpx.get(f"{server.url}/escalations", params={"decision_id": "d-7"}).json() == []
        assert len(server.reads) == 3
    finally:
        server.close()


def test_the_stand_in_shows_a_merge_and_a_close_in_the_pull_requests_state(code_host):
    assert httpx.get(f"{code_host.url}/pulls/8").json() == {
        "number": 8, "state": "open", "merged": False, "changes_requested_by_decision": []}
    httpx.post(f"{code_host.url}/pulls/8/merge", json={"decision_id": "d-8"})
    httpx.post(f"{code_host.url}/pulls/9/close", json={"decision_id": "d-9"})
    assert httpx.get(f"{code_host.url}/pulls/8").json()["merged"] is True
    assert httpx.get(f"{code_host.url}/pulls/9").json() == {
        "number": 9, "state": "closed", "merged": False, "changes_requested_by_decision": []}
    assert [e.kind for e in code_host.effects] == ["merge", "close"]
