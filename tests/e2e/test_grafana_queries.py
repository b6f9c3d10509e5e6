"""Every query the Grafana dashboards and datasources run, executed against the live native stack
after traffic: a panel whose query is wrong shows "No data" at the worst moment, and Grafana
cannot run here to show it.

- Each panel query and query variable (dashboards.queries.panel_queries) parses and returns data:
  PromQL through Prometheus' query API, Jaeger searches through Jaeger's query API, LogsQL through
  VictoriaLogs. Each metric selector in a PromQL query must also match series, so that
  `x or vector(0)` cannot hide a misspelt metric - except the few that only exist once something
  fails (MAY_MATCH_NO_SERIES).
- Each latency panel's query has exemplars carrying the label the Prometheus datasource links on.
- The path a person follows (docs/observability.md) works for a real request: its exemplar opens
  its trace in Jaeger, the trace's "logs for this span" query finds its log records (whose
  trace_id field links back), and its "metrics for this span" queries return its route's RED.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from dashboards.queries import (ALERTMANAGER, JAEGER, PROMETHEUS, VICTORIALOGS, Query, SpanSample, correlation_queries,
                                exemplar_queries, load_datasources, panel_queries)
from harness.polling import wait_for
from tests.e2e.backends import jaeger_trace, prom_exemplars, span_tags

pytestmark = pytest.mark.e2e

# A Grafana time series shows data when any point of its range has some.
RANGE_SECONDS = 15 * 60
STEP_SECONDS = 15
LOOKBACK_SECONDS = 3600
WAIT_SECONDS = 30

# Selectors that match no series while nothing has gone wrong; their queries wrap them in
# `or vector(0)` (or read them next to a series that does exist), so the panels still show 0.
# (metric, label, value): a selector of that metric with that matcher; label None: any selector.
MAY_MATCH_NO_SERIES = {
    ("ALERTS", None, None): "no alert but the Watchdog fires on a healthy stack",
    ("otelcol_exporter_send_failed_spans", None, None): "only after an export to Jaeger failed for good",
    ("otelcol_exporter_send_failed_log_records", None, None): "only after an export to VictoriaLogs failed for good",
    ("hitl_cache_errors_total", None, None): "only after a Redis operation failed",
    ("hitl_cache_hits_total", None, None): "only once a cached /stats summary is read again before it changes",
}

PANEL_QUERIES = {q.where: q for q in panel_queries()}
EXEMPLAR_QUERIES = {q.where: q for q in exemplar_queries()}


@pytest.fixture(scope="module", autouse=True)
def _after_traffic(request):
    """The queries need data: run after the end-to-end traffic and the simulator's (the service
    map's edge) when those fixtures exist."""
    try:
        request.getfixturevalue("simulator_edge")
    except pytest.FixtureLookupError:
        pass


# --- running one query ---------------------------------------------------------------------------


def _prometheus(url: str, path: str, params: dict) -> object:
    body = httpx.get(f"{url}{path}", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus refused {params}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def promql_result(prometheus_url: str, expr: str) -> list:
    """The instant result, or if that is empty, the range result over the last RANGE_SECONDS."""
    result = _prometheus(prometheus_url, "/api/v1/query", {"query": expr})["result"]
    if result:
        return result
    now = time.time()
    return _prometheus(prometheus_url, "/api/v1/query_range",
                       {"query": expr, "start": now - RANGE_SECONDS, "end": now, "step": STEP_SECONDS})["result"]


def execute(stack, query: Query) -> list:
    """What the backend answers to the query, as a list that is empty when there is no data."""
    if query.datasource == PROMETHEUS:
        return promql_result(stack.prometheus_url, query.text)
    if query.datasource == JAEGER:
        response = httpx.get(f"{stack.jaeger_url}{query.text}", timeout=30)
        response.raise_for_status()
        return response.json().get("data") or []
    if query.datasource == VICTORIALOGS:
        response = httpx.get(f"{stack.victorialogs_url}/select/logsql/query", timeout=30,
                             params={"query": query.text, "start": int(time.time()) - LOOKBACK_SECONDS, "limit": 100})
        if response.status_code != 200:
            raise AssertionError(f"VictoriaLogs refused {query.text!r}: {response.status_code} {response.text[:300]}")
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]
    if query.datasource == ALERTMANAGER:
        response = httpx.get(f"{stack.alertmanager_url}{query.text}", timeout=30)
        response.raise_for_status()
        return [response.json()] if response.json() else []
    raise AssertionError(f"no way to run a {query.datasource} query")


def returns_data(stack, query: Query) -> list:
    return wait_for(f"{query.where} to return data - {query.datasource}: {query.text}",
                    lambda: execute(stack, query), timeout=WAIT_SECONDS, interval=2)


# --- PromQL selectors ----------------------------------------------------------------------------


def selectors(prometheus_url: str, expr: str) -> list[tuple[str, list[dict]]]:
    """(metric name, matchers) of every vector/matrix selector, from Prometheus' own parser."""
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("vectorSelector", "matrixSelector") and "matchers" in node:
                found.append((node.get("name", ""), node["matchers"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_prometheus(prometheus_url, "/api/v1/parse_query", {"query": expr}))
    return found


def as_selector(matchers: list[dict]) -> str:
    return "{" + ", ".join(f"{m['name']}{m['type']}{json.dumps(m['value'])}" for m in matchers) + "}"


def may_match_nothing(name: str, matchers: list[dict]) -> bool:
    return any(
        metric == name and (label is None or any(m["name"] == label and m["value"] == value for m in matchers))
        for metric, label, value in MAY_MATCH_NO_SERIES
    )


def missing_selectors(prometheus_url: str, expr: str) -> list[str]:
    now = time.time()
    missing = []
    for name, matchers in selectors(prometheus_url, expr):
        if may_match_nothing(name, matchers):
            continue
        selector = as_selector(matchers)
        series = _prometheus(prometheus_url, "/api/v1/series",
                             {"match[]": selector, "start": now - LOOKBACK_SECONDS, "end": now})
        if not series:
            missing.append(selector)
    return missing


# --- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", sorted(PANEL_QUERIES))
def test_panel_query_returns_data(stack, where):
    query = {q.where: q for q in panel_queries()}[where]  # rendered now: Jaeger searches end now
    returns_data(stack, query)
    if query.datasource == PROMETHEUS:
        missing = missing_selectors(stack.prometheus_url, query.text)
        assert not missing, f"{where}: selectors match no series (misspelt, or the traffic never produced them): {missing}"


@pytest.mark.parametrize("where", sorted(EXEMPLAR_QUERIES))
def test_latency_panel_has_exemplars_that_name_their_trace(stack, where):
    label = _exemplar_trace_id_label()
    query = EXEMPLAR_QUERIES[where]

    def exemplars():
        return [e for e in prom_exemplars(stack.prometheus_url, query.text, time.time() - RANGE_SECONDS)
                if e["labels"].get(label)]

    wait_for(f"exemplars with a {label} label for {where}: {query.text}", exemplars, timeout=WAIT_SECONDS, interval=2)


def test_an_exemplar_leads_to_its_trace_its_logs_and_its_metrics(stack):
    """The path of docs/observability.md, for a request that writes log records (a POST answered 201)."""
    label = _exemplar_trace_id_label()
    server_posts = ('traces_span_metrics_duration_seconds_bucket{service_name="hitl-review", '
                    'span_kind="SPAN_KIND_SERVER", http_request_method="POST", http_response_status_code="201"}')

    def newest_exemplar():
        found = [e for e in prom_exemplars(stack.prometheus_url, server_posts, time.time() - RANGE_SECONDS)
                 if e["labels"].get(label)]
        return max(found, key=lambda e: e["timestamp"]) if found else None

    exemplar = wait_for(f"an exemplar on {server_posts}", newest_exemplar, timeout=WAIT_SECONDS, interval=2)
    trace_id = exemplar["labels"][label]
    trace = wait_for(f"trace {trace_id} (from an exemplar) in Jaeger",
                     lambda: jaeger_trace(stack.jaeger_url, trace_id), timeout=WAIT_SECONDS, interval=1)
    server = next(s for s in trace["spans"] if span_tags(s).get("span.kind") == "server"
                  and s["operationName"] == exemplar["series"]["span_name"])
    process_tags = span_tags(trace["processes"][server["processID"]])
    span = SpanSample(trace_id=trace_id, span_name=server["operationName"],
                      tags={k: str(v) for k, v in {**process_tags, **span_tags(server)}.items()})

    derived_fields = [f for ds in load_datasources() for f in ds.get("jsonData", {}).get("derivedFields", [])]
    for query in correlation_queries(span):
        answer = returns_data(stack, query)
        if query.datasource == VICTORIALOGS:
            assert all(record.get("trace_id") == trace_id for record in answer), query
            for field in derived_fields:  # the field a log's link to its trace is read from
                assert all(record.get(field["matcherRegex"]) == trace_id for record in answer), field
        if query.datasource == JAEGER:
            assert any(s["traceID"] == trace_id for t in answer for s in t["spans"]), query


def _exemplar_trace_id_label() -> str:
    prometheus = next(ds for ds in load_datasources() if ds["type"] == PROMETHEUS)
    (destination,) = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    return destination["name"]
