"""The code-host client on its own, against the stand-in: every attempt ends within its deadline,
whatever the host does with the connection."""

import time

from app.reviews.flows import CodeHost

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
    assert len(code_host.calls) == 1
