"""The generated dashboards, checked without a Grafana (that the committed JSON is what the code
generates is tests/test_generated.py's): every panel names a provisioned datasource and explains itself, latency panels carry
exemplars, links and variables resolve, thresholds sit at the SLO values, and every metric a
query reads is one the pipeline produces (the telemetry contract, the collector, the SLO rules).
Whether each query returns data is tests/e2e/test_grafana_queries.py's job."""

import json
import re
from pathlib import Path

import pytest
import yaml

from dashboards import objectives
from dashboards.queries import iter_panels, load_dashboards, load_datasources, panel_queries, target_datasource

REPO = Path(__file__).resolve().parents[2]
UIDS = {"hitl-overview", "hitl-performance", "hitl-business", "hitl-slo"}
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range", "__range_s", "__url_time_range", "__field", "__all"}
LATENCY_HISTOGRAM = "traces_span_metrics_duration_seconds_bucket"
# PromQL: a metric name is followed by a selector or a range.
METRIC_NAME = re.compile(r"(?<![\w:.\"])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")

DASHBOARDS = load_dashboards()
PANELS = [(d, p) for d in DASHBOARDS for p in iter_panels(d)]


def _ids(dashboard_panel):
    dashboard, panel = dashboard_panel
    return f"{dashboard['uid']}/{panel['title']}"


def test_the_four_dashboards_exist_and_link_to_each_other():
    assert {d["uid"] for d in DASHBOARDS} == UIDS
    for dashboard in DASHBOARDS:
        assert "hitl" in dashboard["tags"]
        links = dashboard["links"]
        assert any(link["type"] == "dashboards" and "hitl" in link["tags"] for link in links), dashboard["uid"]


@pytest.mark.parametrize("dashboard_panel", PANELS, ids=_ids)
def test_every_panel_has_a_title_description_unit_and_provisioned_datasource(dashboard_panel):
    datasources = {ds["uid"]: ds["type"] for ds in load_datasources()}
    _, panel = dashboard_panel
    assert panel["title"].strip() and len(panel["description"]) > 40
    assert panel["fieldConfig"]["defaults"].get("unit"), "a panel without a unit leaves the reader guessing"
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        ref = target_datasource(panel, target)
        assert datasources.get(ref.get("uid")) == ref.get("type"), f"unknown datasource {ref} in {target}"


def test_panel_ids_and_titles_are_unique_per_dashboard():
    for dashboard in DASHBOARDS:
        panels = list(iter_panels(dashboard))
        ids = [p["id"] for p in panels] + [p["id"] for p in dashboard["panels"] if p["type"] == "row"]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        titles = [p["title"] for p in panels]
        assert len(titles) == len(set(titles)), dashboard["uid"]


def test_latency_panels_show_exemplars():
    """Every time series or heatmap of request latency carries exemplars: the way from a slow
    request on a graph to its trace."""
    latency_targets = [
        (dashboard["uid"], panel["title"], target)
        for dashboard, panel in PANELS
        if panel["type"] in ("timeseries", "heatmap")
        for target in panel["targets"]
        if LATENCY_HISTOGRAM in target.get("expr", "")
    ]
    assert len(latency_targets) >= 5
    missing = [(uid, title) for uid, title, target in latency_targets if target.get("exemplar") is not True]
    assert not missing, f"latency panels without exemplars: {missing}"
    assert any(panel["type"] == "heatmap" and LATENCY_HISTOGRAM in panel["targets"][0]["expr"] for _, panel in PANELS)


def test_panel_and_data_links_point_to_existing_dashboards():
    for dashboard, panel in PANELS:
        links = panel.get("links", []) + panel["fieldConfig"]["defaults"].get("links", [])
        for link in links:
            target = re.match(r"/d/([\w-]+)", link["url"])
            assert target and target.group(1) in UIDS, f"{panel['title']}: {link['url']}"


def test_every_variable_used_is_defined():
    for dashboard in DASHBOARDS:
        defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
        text = json.dumps([dashboard["panels"], dashboard["templating"]])
        used = {m.group(1) or m.group(2) for m in re.finditer(r"\$\{(\w+)[^}]*\}|\$(\w+)", text)}
        assert used <= defined, f"{dashboard['uid']}: undefined variables {used - defined}"
    panel_queries()  # substitutes every variable; raises on one it has no value for


def _thresholds(title: str) -> list[float]:
    panel = next(p for _, p in PANELS if p["title"] == title)
    return [step["value"] for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if step["value"] is not None]


def test_thresholds_sit_at_the_slo_and_alert_values():
    for slo in objectives.SLOS:
        assert _thresholds(f"{slo.title} SLI ({slo.window})") == [slo.objective]
    assert _thresholds("p95 latency") == [objectives.P95_LATENCY_WARNING_SECONDS, objectives.P95_LATENCY_CRITICAL_SECONDS]
    assert _thresholds("Error ratio (5xx)") == [objectives.ERROR_RATIO_WARNING, objectives.ERROR_RATIO_CRITICAL]
    assert _thresholds("Availability (30 days)") == [next(s for s in objectives.SLOS if s.name == "availability").objective]


def _promql() -> list[str]:
    return [q.text for q in panel_queries() if q.datasource == "prometheus"]


def _contract_metric_names() -> set[str]:
    """Prometheus names of the telemetry contract's metrics (the exporter's naming rules)."""
    contract = yaml.safe_load((REPO / "app" / "telemetry" / "contract.yaml").read_text())
    suffix = {"s": "_seconds", "By": "_bytes", "1": "_ratio"}
    names = set()
    for metric in contract["metrics"]:
        base = metric["name"].replace(".", "_") + suffix.get(metric["unit"], "")
        if metric["instrument"] == "counter":
            names.add(base + "_total")
        elif metric["instrument"] == "histogram":
            names |= {base + "_bucket", base + "_sum", base + "_count"}
        else:
            names.add(base)
    return names


def _recorded_rules() -> set[str]:
    names = set()
    for path in (REPO / "prometheus" / "rules").glob("*.yml"):
        for document in yaml.safe_load_all(path.read_text()):
            for group in (document or {}).get("groups", []):
                names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_every_metric_read_is_produced_by_the_pipeline():
    """App metrics must be in the telemetry contract, recording-rule series (SLOs, process
    utilisation) must be recorded by a rule in prometheus/rules/; the rest are the span_metrics
    connector's, the collector's own and Prometheus' built-ins."""
    used = {name for expr in _promql() for name in METRIC_NAME.findall(expr)}
    app = {n for n in used if n.startswith(("hitl_", "db_client_", "process_"))}
    assert app <= _contract_metric_names(), f"not in app/telemetry/contract.yaml: {app - _contract_metric_names()}"
    recorded = {n for n in used if ":" in n}
    assert any(n.startswith("slo:") for n in recorded), "the SLO dashboard reads the SLO recording rules"
    assert recorded <= _recorded_rules(), f"no recording rule in prometheus/rules/ for {recorded - _recorded_rules()}"
    known_prefixes = ("traces_span_metrics_", "otelcol_", "hitl_", "db_client_", "process_")
    others = {n for n in used if ":" not in n and not n.startswith(known_prefixes)}
    assert others <= {"ALERTS", "up"}, f"unexpected metrics {others}"
