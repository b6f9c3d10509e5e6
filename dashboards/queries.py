"""Every query Grafana would run for the HITL dashboards and datasources, with Grafana's
variables replaced by concrete values, so that tests can run each one against the backends.

Read from what Grafana reads - the generated grafana/dashboards/*.json and
grafana/provisioning/datasources/datasources.yaml - not from the Python that wrote them.

Each query is a Query(where, datasource, text):
  where       e.g. "HITL / Performance / Latency per route: p50 / p95 / p99 / B"
  datasource  the datasource plugin type: prometheus, jaeger, victoriametrics-logs-datasource,
              alertmanager
  text        PromQL (run with /api/v1/query); LogsQL (/select/logsql/query); for Jaeger and
              Alertmanager the HTTP API path Grafana's datasource requests (GET on the backend URL)
"""

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlencode

import yaml

from dashboards import DATASOURCES_FILE, OUTPUT_DIR

PROMETHEUS = "prometheus"
JAEGER = "jaeger"
VICTORIALOGS = "victoriametrics-logs-datasource"
ALERTMANAGER = "alertmanager"

# What the variables stand for when a query is executed: the Grafana built-ins at the values a
# 1-hour dashboard gives them (rounded to what a short test run has data for), and the
# dashboards' own variables at their defaults ("All" is the regex .*).
DEFAULT_VALUES: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "env": ".*",
    "service": "hitl-review",
    "route": ".*",
}

# How far back Jaeger searches and LogsQL queries look (Grafana sends the dashboard's time range).
LOOKBACK_SECONDS = 3600


class Query(NamedTuple):
    where: str
    datasource: str
    text: str


@dataclass(frozen=True)
class SpanSample:
    """The span a trace-to-metrics/logs link starts from (a real one, for live tests)."""

    trace_id: str
    span_name: str
    tags: Mapping[str, str] = field(default_factory=dict)


# Stands in for a real span when none is given: shows the shape of the correlation queries, but
# its ids match nothing in a live backend.
EXAMPLE_SPAN = SpanSample(
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_name="POST /api/v1/reviews",
    tags={"service.instance.id": "example-instance", "http.route": "/api/v1/reviews"},
)

_VARIABLE = re.compile(r"\$\{([\w.]+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)\s*$")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace $var, ${var}, ${var:format} and [[var]]; an unknown variable is an error."""

    def replace(match: re.Match) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise KeyError(f"no value for Grafana variable {name!r} in: {text}")
        return values[name]

    return _VARIABLE.sub(replace, text)


def load_dashboards(directory: Path = OUTPUT_DIR) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]


def load_datasources(path: Path = DATASOURCES_FILE) -> list[dict]:
    """The provisioned datasources, with provisioning's `$$` escape undone (as Grafana does)."""
    return yaml.safe_load(path.read_text().replace("$$", "$"))["datasources"]


def iter_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def target_datasource(panel: dict, target: dict) -> dict:
    return target.get("datasource") or panel.get("datasource") or {}


def panel_queries(values: Mapping[str, str] | None = None, *, now: float | None = None,
                  dashboards: list[dict] | None = None) -> list[Query]:
    """Every panel target and query variable of every dashboard."""
    values = {**DEFAULT_VALUES, **(values or {})}
    now = time.time() if now is None else now
    queries = []
    for dashboard in dashboards if dashboards is not None else load_dashboards():
        title = dashboard["title"]
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                text = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
                queries.append(Query(f"{title} / variable {variable['name']}", variable["datasource"]["type"],
                                     substitute(_label_values_as_promql(text), values)))
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                ds_type = target_datasource(panel, target).get("type", "")
                where = f"{title} / {panel['title']} / {target.get('refId', '?')}"
                queries.append(Query(where, ds_type, _render_target(ds_type, target, values, now)))
    return queries


def exemplar_queries(values: Mapping[str, str] | None = None, *, dashboards: list[dict] | None = None) -> list[Query]:
    """The Prometheus targets that ask for exemplars (their panels draw the links to traces)."""
    values = {**DEFAULT_VALUES, **(values or {})}
    return [
        Query(f"{d['title']} / {p['title']} / {t.get('refId', '?')}", PROMETHEUS, substitute(t["expr"], values))
        for d in (dashboards if dashboards is not None else load_dashboards())
        for p in iter_panels(d)
        for t in p.get("targets", [])
        if t.get("exemplar") and target_datasource(p, t).get("type") == PROMETHEUS
    ]


def correlation_queries(span: SpanSample = EXAMPLE_SPAN, *, datasources: list[dict] | None = None) -> list[Query]:
    """The queries behind the datasources' links, for one span/trace:

    exemplar -> trace (Prometheus), trace_id field -> trace (VictoriaLogs), span -> its logs and
    span -> its metrics (Jaeger), and Alertmanager's status (what Grafana's alerting UI reads).
    """
    queries = []
    by_uid = {ds["uid"]: ds for ds in (datasources if datasources is not None else load_datasources())}
    for ds in by_uid.values():
        name, data = ds["name"], ds.get("jsonData", {})
        for destination in data.get("exemplarTraceIdDestinations", []):
            target = by_uid[destination["datasourceUid"]]
            queries.append(Query(f"datasource {name} / exemplar {destination['name']} -> {target['name']}",
                                 target["type"], _trace_by_id(span.trace_id)))
        for derived in data.get("derivedFields", []):
            target = by_uid[derived["datasourceUid"]]
            trace_id = substitute(derived["url"], {"__value.raw": span.trace_id})
            queries.append(Query(f"datasource {name} / derived field {derived['name']} -> {target['name']}",
                                 target["type"], _trace_by_id(trace_id)))
        span_values = {
            "__trace.traceId": span.trace_id,
            "__span.traceId": span.trace_id,
            "__span.name": span.span_name,
        }
        if "tracesToLogsV2" in data:
            logs = data["tracesToLogsV2"]
            span_values["__tags"] = _tags_matcher(logs.get("tags", []), span.tags, logsql=True)
            queries.append(Query(f"datasource {name} / tracesToLogsV2", by_uid[logs["datasourceUid"]]["type"],
                                 substitute(logs["query"], span_values)))
        if "tracesToMetrics" in data:
            metrics = data["tracesToMetrics"]
            span_values["__tags"] = _tags_matcher(metrics.get("tags", []), span.tags)
            for query in metrics.get("queries", []):
                queries.append(Query(f"datasource {name} / tracesToMetrics / {query['name']}",
                                     by_uid[metrics["datasourceUid"]]["type"], substitute(query["query"], span_values)))
        if ds["type"] == ALERTMANAGER:
            queries.append(Query(f"datasource {name} / status", ALERTMANAGER, "/api/v2/status"))
    return queries


def all_queries(values: Mapping[str, str] | None = None, span: SpanSample = EXAMPLE_SPAN, *,
                now: float | None = None) -> list[Query]:
    """Every panel query, query variable and datasource correlation query."""
    return panel_queries(values, now=now) + correlation_queries(span)


# --- rendering ---------------------------------------------------------------------------------


def _render_target(ds_type: str, target: dict, values: Mapping[str, str], now: float) -> str:
    if ds_type == PROMETHEUS:
        return substitute(target["expr"], values)
    if ds_type == VICTORIALOGS:
        return substitute(target["expr"], values)
    if ds_type == JAEGER:
        return _jaeger_request(target, values, now)
    raise ValueError(f"no renderer for datasource type {ds_type!r} (target {target})")


def _jaeger_request(target: dict, values: Mapping[str, str], now: float) -> str:
    """The Jaeger query API request Grafana's Jaeger datasource makes for this target."""
    end_us, start_us = int(now * 1e6), int((now - LOOKBACK_SECONDS) * 1e6)
    query_type = target.get("queryType")
    if query_type == "search":
        params = {"service": substitute(target["service"], values), "start": start_us, "end": end_us,
                  "limit": target.get("limit", 20)}
        for key in ("operation", "tags", "minDuration", "maxDuration"):
            if target.get(key):
                params[key] = substitute(str(target[key]), values)
        return "/api/traces?" + urlencode(params)
    if query_type == "dependencyGraph":
        return "/api/dependencies?" + urlencode({"endTs": int(now * 1000), "lookback": LOOKBACK_SECONDS * 1000})
    if query_type in (None, "") and target.get("query"):
        return _trace_by_id(substitute(target["query"], values))
    raise ValueError(f"unsupported Jaeger query type {query_type!r}")


def _trace_by_id(trace_id: str) -> str:
    return f"/api/traces/{trace_id}"


def _label_values_as_promql(text: str) -> str:
    """label_values(selector, label) (a Grafana function) as the PromQL that returns the same values."""
    match = _LABEL_VALUES.match(text)
    if not match:
        return text
    selector = match["selector"] or "{__name__=~\".+\"}"
    return f"count by ({match['label']}) ({selector})"


def _tags_matcher(mapping: list[dict], span_tags: Mapping[str, str], *, logsql: bool = False) -> str:
    """What Grafana puts in $__tags: a matcher per mapped tag the span has - PromQL `label="value"`
    joined by commas, or LogsQL `field:="value"` joined by spaces."""
    parts = []
    for tag in mapping:
        if tag["key"] in span_tags:
            label = tag.get("value") or tag["key"]
            value = json.dumps(str(span_tags[tag["key"]]))
            parts.append(f"{label}:={value}" if logsql else f"{label}={value}")
    return (" " if logsql else ", ").join(parts)
