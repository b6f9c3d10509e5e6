"""The promise of the pipeline, end to end: spans become RED metrics with exemplars, the
exemplars lead to the exact trace, business metrics and logs arrive, and nothing secret does."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx

from tests.e2e.backends import (jaeger_trace, jaeger_traces_json, logs_query,
                                prom_exemplars, span_tags)
from harness.polling import wait_for
from tests.e2e.traffic import DECISIONS, REVIEW, REVIEWS, SLOW_REQUESTS, SLOW_SECONDS, STATS

EXEMPLAR_SAMPLE = 30


def test_the_traffic_went_as_planned(traffic):
    assert traffic.traffic.sent == traffic.traffic.planned


def test_span_derived_request_counts_equal_the_requests_sent(traffic):
    missing = {k: v for k, v in traffic.expected_calls.items() if traffic.observed_calls.get(k) != v}
    extra = {k: v for k, v in traffic.observed_calls.items() if k not in traffic.expected_calls}
    assert not missing and not extra, f"differs from what was sent: expected {missing}, unexpected {extra}"
    # Sanity of the plan itself: every class of outcome is in it.
    statuses = {status for (_, _, status) in traffic.expected_calls}
    assert {"200", "201", "401", "403", "404", "409", "422", "500"} <= statuses


def test_server_errors_are_marked_as_errors(traffic):
    assert traffic.snapshots["server errors by route"] == {(REVIEW,): 5.0}


def test_slow_requests_land_above_the_one_second_bucket(traffic):
    buckets = {float(le): n for (le,), n in traffic.snapshots["stats latency buckets"].items()}
    total = traffic.expected_calls[("GET", STATS, "200")]
    assert SLOW_SECONDS > 1
    assert buckets[float("inf")] == total
    assert total - buckets[1.0] == SLOW_REQUESTS, buckets


def test_exemplars_resolve_to_the_trace_with_the_server_span_of_their_route(stack, traffic):
    def exemplars():
        found = prom_exemplars(stack.prometheus_url,
                               'traces_span_metrics_duration_seconds_bucket{service_name="hitl-review", '
                               'span_kind="SPAN_KIND_SERVER", http_route=~"/api/.+"}',
                               start=traffic.traffic.started_at - 5)
        by_trace = {e["labels"]["trace_id"]: e for e in found}
        return by_trace if len(by_trace) >= 20 else None

    by_trace = wait_for("at least 20 distinct exemplar trace ids", exemplars, timeout=60)
    sample = random.Random(7).sample(sorted(by_trace), min(EXEMPLAR_SAMPLE, len(by_trace)))
    unresolved = []
    for trace_id in sample:
        exemplar = by_trace[trace_id]
        route, method = exemplar["series"]["http_route"], exemplar["series"]["http_request_method"]

        def server_span():
            trace = jaeger_trace(stack.jaeger_url, trace_id)
            for span in (trace or {}).get("spans", []):
                tags = span_tags(span)
                if (span["spanID"] == exemplar["labels"].get("span_id") and tags.get("span.kind") == "server"
                        and tags.get("http.route") == route and span["operationName"] == f"{method} {route}"):
                    return span
            return None

        try:
            wait_for(f"trace {trace_id} with the server span of {method} {route}", server_span, timeout=20)
        except AssertionError as e:
            unresolved.append(str(e))
    assert not unresolved, f"{len(unresolved)} of {len(sample)} exemplars do not resolve: {unresolved[:3]}"


def test_business_metrics_match_the_traffic(traffic):
    diffs = {name: (traffic.expected_business[name], traffic.observed_business.get(name))
             for name in traffic.expected_business
             if traffic.expected_business[name] != traffic.observed_business.get(name)}
    assert not diffs, f"expected vs observed: {diffs}"


def test_logs_reach_victorialogs_with_trace_ids_that_resolve(stack, traffic):
    created = sum(traffic.traffic.created.values())

    # The traffic's own records: the simulator submits reviews too, later (simulator_edge).
    window = (f'_time:[{datetime.fromtimestamp(traffic.traffic.started_at - 1, UTC).isoformat()}, '
              f'{datetime.fromtimestamp(traffic.traffic.finished_at + 1, UTC).isoformat()}]')

    def submitted_logs():
        records = logs_query(stack.victorialogs_url,
                             f'{window} AND service.name:"hitl-review" AND _msg:"review submitted" AND '
                             'deployment.environment.name:"e2e"')
        return records if len(records) == created else None

    records = wait_for(f"{created} 'review submitted' log records", submitted_logs, timeout=60)
    for record in records:
        assert len(record.get("trace_id", "")) == 32 and record.get("span_id"), record
        trace = wait_for(f"trace {record['trace_id']} of a log record",
                         lambda r=record: jaeger_trace(stack.jaeger_url, r["trace_id"]), timeout=20)
        operations = {span["operationName"] for span in trace["spans"]}
        assert f"POST {REVIEWS}" in operations
        assert record["span_id"] in {span["spanID"] for span in trace["spans"]}


def test_the_decision_path_is_one_trace(stack, traffic):
    """HTTP -> service -> database -> cache invalidation -> action call to the code host."""
    traces = json.loads(jaeger_traces_json(stack.jaeger_url, "hitl-review", operation=f"POST {DECISIONS}",
                                           limit=50))["data"]

    def shape(trace: dict) -> set[str]:
        kinds = set()
        for span in trace["spans"]:
            tags = span_tags(span)
            if span["operationName"] == f"POST {DECISIONS}" and tags.get("span.kind") == "server":
                kinds.add("server")
            # On PostgreSQL the claim and the insert are one `WITH … INSERT INTO decisions …` statement.
            if tags.get("db.system.name") == "postgresql" and "INSERT INTO decisions" in str(tags.get("db.query.text")):
                kinds.add("database insert")
            if tags.get("db.system.name") == "redis":
                kinds.add("cache")
            if span["operationName"].startswith("action "):
                kinds.add("action")
            if tags.get("span.kind") == "client" and tags.get("http.request.method") == "POST":
                kinds.add("code host call")
        return kinds

    shapes = [shape(t) for t in traces if any(s["operationName"] == f"POST {DECISIONS}" for s in t["spans"])]
    full = {"server", "database insert", "cache", "action", "code host call"}
    assert any(s == full for s in shapes), f"no decision trace has all of {full}; seen: {shapes[:5]}"


def test_no_credential_or_email_reaches_jaeger_or_victorialogs(stack, traffic):
    # Everything stored for the run, as raw text: the newest traces of every operation (the
    # alerting tests may have added thousands of one kind) and every log record.
    operations = httpx.get(f"{stack.jaeger_url}/api/services/hitl-review/operations", timeout=10).json()["data"]
    assert f"GET {REVIEWS}" in operations
    stored = "\n".join(jaeger_traces_json(stack.jaeger_url, "hitl-review", operation=op, limit=300)
                       for op in operations)
    logs = logs_query(stack.victorialogs_url, "*")
    assert logs
    stored += "\n".join(json.dumps(r) for r in logs)
    leaked = [s[:6] + "..." for s in traffic.traffic.secrets if s in stored]
    assert not leaked, f"found in stored telemetry: {leaked}"


def test_the_authenticated_otlp_receiver_wants_its_bearer_token(stack):
    # An empty ExportTraceServiceRequest: valid OTLP/HTTP protobuf with no spans.
    url = f"{stack.collector_otlp_auth_http}/v1/traces"
    headers = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(url, content=b"", headers=headers, timeout=10).status_code == 401
    wrong = headers | {"Authorization": "Bearer not-the-token"}
    assert httpx.post(url, content=b"", headers=wrong, timeout=10).status_code == 401
    right = headers | {"Authorization": f"Bearer {stack.ingest_token}"}
    assert httpx.post(url, content=b"", headers=right, timeout=10).status_code == 200


def test_the_simulator_and_the_service_form_a_service_graph_edge(stack, simulator_edge):
    assert simulator_edge["callCount"] > 0
    assert (simulator_edge["parent"], simulator_edge["child"]) == ("hitl-simulator", "hitl-review")


def test_the_queue_is_counted_once_however_many_processes_reported_it(stack, live_app, traffic, tmp_path):
    """A second process of the service reports the same database's queue, then is SIGKILLed: its
    last reading stays in the collector (for an hour), yet the Business dashboard's "Waiting for a
    decision" panel shows the database's count, not twice it."""
    from dashboards.queries import panel_queries
    from harness.factories import review_body
    from tests.e2e.backends import prom_query

    panel = next(q for q in panel_queries({"env": "e2e", "service": "hitl-review"})
                 if q.where.startswith("HITL / Business / Waiting for a decision"))
    prom = stack.prometheus_url
    readers = 'hitl_shared_state_reading_time_seconds{service_name="hitl-review"}'
    before = {s["metric"]["instance"] for s in prom_query(prom, readers)}
    with live_app.client("pipeline") as client:
        for _ in range(3):  # something waiting, whatever the earlier tests left
            assert client.post("/api/v1/reviews", json=review_body()).status_code == 201

    def waiting_in_the_database() -> int:
        with live_app.client("viewer") as client:
            return sum(client.get("/api/v1/stats").json()["pending_by_severity"].values())

    def panel_value() -> float | None:
        result = prom_query(prom, panel.text)
        return float(result[0]["value"][1]) if result else None

    kill = live_app.start_another(stack, "second-replica", tmp_path)
    try:
        wait_for("the second process's reading in Prometheus",
                 lambda: {s["metric"]["instance"] for s in prom_query(prom, readers)} - before, timeout=90)
    finally:
        kill()
    expected = waiting_in_the_database()
    assert expected > 0
    naive = 'sum(hitl_reviews_pending{service_name="hitl-review", deployment_environment_name="e2e"})'
    wait_for("the stopped process's reading to be older than the live one's",
             lambda: panel_value() == expected, timeout=60)
    stale = float(prom_query(prom, naive)[0]["value"][1])
    assert stale >= 2 * expected, f"the naive sum ({stale}) should count the stopped process too"
    print(f"\nwaiting reviews: database {expected}, panel {panel_value():g}, naive sum over processes {stale:g}")
