"""Restarts keep data, on the compose stack: `docker compose restart` of each stateful service,
then `down` (without --volumes) and `up`, leave every kind of data where it was: Prometheus
series (and exemplars), stored traces, logs, reviews, Alertmanager's silences and the
simulator's keys. `down --volumes` then removes them all.

The last module of the suite (the file name sorts last): it restarts what the others read.
The native stack's own restarts are `python -m stack down/up`, tested in tests/stack.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from harness.polling import wait_for
from tests.e2e.backends import jaeger_trace, jaeger_traces_json, logs_query, prom_exemplars

SIMULATOR_KEYS = ["run", "--rm", "--no-deps", "--entrypoint", "cat", "simulator", "/run/hitl-keys/simulator.env"]


@pytest.fixture(scope="module")
def compose(stack, traffic):
    """The compose stack, once the suite's traffic has been observed (restarts reset counters)."""
    if stack.kind != "compose":
        pytest.skip("restarts of containers: the compose stack only")
    return stack


def snapshot(stack, live_app, at: float) -> dict:
    """What must survive, read through each component's own API. `at`: a moment in the past, so
    Prometheus and VictoriaLogs answer about data written before the restart only."""
    stamp = datetime.fromtimestamp(at, UTC)
    traces = jaeger_traces_json(stack.jaeger_url, "hitl-review", limit=20, operation="POST /api/v1/reviews")
    trace_ids = sorted({span["traceID"] for trace in json.loads(traces)["data"]
                        for span in trace["spans"]})[:5]
    with live_app.client("viewer") as client:
        reviews = client.get("/api/v1/reviews", params={"limit": 200})
        reviews.raise_for_status()
    def at_then(query: str):
        body = httpx.get(f"{stack.prometheus_url}/api/v1/query", timeout=10,
                         params={"query": query, "time": at}).json()
        return body["data"]["result"][0]["value"][1] if body["data"]["result"] else None

    exemplars = prom_exemplars(stack.prometheus_url, 'traces_span_metrics_duration_seconds_bucket{service_name="hitl-review"}',
                               start=at - 600, end=at)
    logs = logs_query(stack.victorialogs_url,
                      f'_time:[{(stamp - timedelta(hours=1)).isoformat()}, {stamp.isoformat()}] AND '
                      'service.name:"hitl-review" AND _msg:"review submitted"')
    silences = httpx.get(f"{stack.alertmanager_url}/api/v2/silences", timeout=10).json()
    return {
        "trace ids": trace_ids,
        "traces": {t: len((jaeger_trace(stack.jaeger_url, t) or {}).get("spans", [])) for t in trace_ids},
        "reviews": (reviews.json()["total"], sorted(r["id"] for r in reviews.json()["items"])),
        # The stored history, as of `at` (the live series of a restarted collector start anew:
        # its span-metric counters are in memory, and Prometheus' rate() handles the reset).
        "span-metric series before the restart": at_then("count(last_over_time(traces_span_metrics_calls_total[5m]))"),
        "calls before the restart": at_then('sum(traces_span_metrics_calls_total{service_name="hitl-review"})'),
        "exemplars before the restart": len(exemplars),
        "logs before the restart": len(logs),
        "silences": sorted(s["id"] for s in silences if s["status"]["state"] == "active"),
        "simulator keys": stack(*SIMULATOR_KEYS).stdout,
    }


def differences(before: dict, after: dict) -> dict:
    """What changed, as {what: (before, after)}."""
    return {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}


def settled(stack, live_app, at: float, before: dict) -> dict:
    """What differs from `before` once the restarted services answer again (empty: nothing)."""
    seen: dict = {}

    def same():
        seen.update(snapshot(stack, live_app, at))
        return not differences(before, seen)

    try:
        wait_for("every kind of data to be back", same, timeout=120, interval=2)
    except AssertionError:
        pass
    return differences(before, seen)


@pytest.fixture(scope="module")
def before(compose, live_app) -> tuple[float, dict]:
    # A silence: Alertmanager's own state (its data volume).
    now = datetime.now(UTC)
    silence = httpx.post(f"{compose.alertmanager_url}/api/v2/silences", timeout=10, json={
        "matchers": [{"name": "alertname", "value": "RestartTest", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=2)).isoformat(),
        "createdBy": "tests/e2e/test_restarts.py", "comment": "must survive restarts"})
    assert silence.status_code == 200, silence.text
    time.sleep(3)  # let the last writes land (span-metric flush, log batches)
    at = time.time() - 2
    state = snapshot(compose, live_app, at)
    assert state["trace ids"] and state["reviews"] and state["silences"] and state["logs before the restart"]
    assert state["exemplars before the restart"] and "SIM_PIPELINE_KEY=" in state["simulator keys"]
    return at, state


# Every service that keeps state, and the two the others depend on (Redis: a cache without
# persistence, by design; the app: reconnects).
RESTARTED = ["postgres", "prometheus", "alertmanager", "jaeger", "victorialogs", "otel-collector", "redis", "app"]


def started_at(compose) -> dict[str, tuple[str, str]]:
    """service -> (container id, when it last started)."""
    found = {}
    for name, row in compose.ps().items():
        inspected = subprocess.run(["docker", "inspect", "--format", "{{.Id}} {{.State.StartedAt}}", row["ID"]],
                                   env=compose.env, capture_output=True, text=True, timeout=30, check=True)
        container, when = inspected.stdout.split()
        found[name] = (container, when)
    return found


def test_restarting_every_stateful_service_keeps_every_kind_of_data(compose, live_app, before):
    at, state = before
    before_restart = started_at(compose)
    compose("restart", *RESTARTED, timeout=300)
    compose.up(timeout=180)  # waits until every service is healthy again
    after_restart = started_at(compose)
    for name in RESTARTED:  # the same container, started again
        assert after_restart[name][0] == before_restart[name][0], f"{name}: a new container"
        assert after_restart[name][1] != before_restart[name][1], f"{name} was not restarted"
    changed = settled(compose, live_app, at, state)
    assert not changed, f"changed by restarting {RESTARTED} (before, after): {changed}"


def test_down_and_up_keeps_every_kind_of_data(compose, live_app, before):
    at, state = before
    compose.down(volumes=False)
    assert compose.volumes(), "down without --volumes removed the volumes"
    compose.up(timeout=300)
    changed = settled(compose, live_app, at, state)
    assert not changed, f"changed by down and up (before, after): {changed}"


def test_down_with_volumes_removes_every_kind_of_data(compose, live_app, before):
    at, state = before
    compose.down(volumes=True)
    assert not compose.volumes(), f"down --volumes left {compose.volumes()}"
    compose.up(timeout=300)
    # Fresh keys for this test's reads: the old ones went with the database.
    key = compose.exec("app", "env", "OTEL_SDK_DISABLED=true", "python", "-m", "app", "create-key",
                       "e2e-viewer-after-down", "viewer").split()[0]
    reviews = httpx.get(f"{compose.app_url}/api/v1/reviews", headers={"X-API-Key": key}, timeout=10)
    assert reviews.status_code == 200 and reviews.json()["items"] == []
    assert httpx.get(f"{compose.app_url}/api/v1/reviews", headers={"X-API-Key": live_app.keys["viewer"]},
                     timeout=10).status_code == 401
    assert all(jaeger_trace(compose.jaeger_url, t) is None for t in state["trace ids"])
    assert not httpx.get(f"{compose.alertmanager_url}/api/v2/silences", timeout=10).json()
    history = httpx.get(f"{compose.prometheus_url}/api/v1/query", timeout=10,
                        params={"query": "count(last_over_time(traces_span_metrics_calls_total[5m]))", "time": at})
    assert history.json()["data"]["result"] == [], "Prometheus still has the series of before"
    assert not logs_query(compose.victorialogs_url, 'service.name:"hitl-review" AND _msg:"review submitted"')
    assert compose(*SIMULATOR_KEYS).stdout != state["simulator keys"]
