"""Overview: is the service healthy, is anything firing, is the telemetry pipeline itself healthy -
and links to the three detailed dashboards. The home dashboard of the HITL Grafana."""

from dashboards import objectives as o
from dashboards.slo import sli
from dashboards.panels import (
    CALLS, DURATION_BUCKET, FIVE_XX, UID_BUSINESS, UID_OVERVIEW, UID_PERFORMANCE, UID_SLO, env_variable,
    jaeger_dependency_graph, link_to, logsql, new_dashboard, nodegraph_panel, prom, quantile, rate, ratio_or_zero,
    route_link, row, server_spans, service_variable, stat_panel, steps, timeseries_panel, VICTORIALOGS,
)

ALL = server_spans(route=False)
ERRORS = server_spans(FIVE_XX, route=False)
AVAILABILITY = next(s for s in o.SLOS if s.name == "availability")


def build():
    to_performance = link_to("Performance: latency per route, exemplars, resources", UID_PERFORMANCE)
    to_business = link_to("Business: reviews, decisions, queue", UID_BUSINESS)
    to_slo = link_to("SLOs: budgets and burn rates", UID_SLO)

    return (
        new_dashboard(
            UID_OVERVIEW,
            "HITL / Overview",
            "Health of the HITL review service and of its telemetry pipeline at a glance.",
            "overview",
        )
        .with_variable(env_variable())
        .with_variable(service_variable())
        .with_row(row("Service health: $service"))
        .with_panel(stat_panel(
            "Request rate",
            "Requests per second answered by the service (its server spans, all routes), from the "
            "span_metrics connector.",
            [prom(f"sum({rate(f'{CALLS}{ALL}')})")],
            unit="reqps", thresholds=steps("blue"), links=[to_performance],
        ))
        .with_panel(stat_panel(
            "Error ratio (5xx)",
            "Share of requests answered with a 5xx. Yellow from 0.5% (ElevatedErrorRate, 10 min), red from "
            "1% (HighErrorRate, 5 min).",
            [prom(ratio_or_zero(rate(f"{CALLS}{ERRORS}"), rate(f"{CALLS}{ALL}")))],
            unit="percentunit", decimals=2, links=[to_performance],
            thresholds=steps("green", (o.ERROR_RATIO_WARNING, "yellow"), (o.ERROR_RATIO_CRITICAL, "red")),
        ))
        .with_panel(stat_panel(
            "p95 latency",
            "95th percentile of request duration over all routes. Yellow from 500 ms (ElevatedLatency and the "
            "latency SLO), red from 1 s (HighLatency).",
            [prom(quantile(0.95, f"{DURATION_BUCKET}{ALL}"))],
            unit="s", links=[to_performance],
            thresholds=steps("green", (o.P95_LATENCY_WARNING_SECONDS, "yellow"), (o.P95_LATENCY_CRITICAL_SECONDS, "red")),
        ))
        .with_panel(stat_panel(
            "Availability (30 days)",
            "Share of requests without a 5xx over the availability SLO period of 30 days (the SLO's recording "
            "rule). Green at or above the 99.9% objective, red below it.",
            [prom(sli(AVAILABILITY))],
            unit="percentunit", decimals=3, sparkline=False, links=[to_slo],
            thresholds=steps("red", (AVAILABILITY.objective, "green")),
        ))
        .with_panel(stat_panel(
            "Firing alerts",
            "Alerts firing in Prometheus now, not counting the always-firing Watchdog (which proves the path to "
            "the pager). Anything above zero has a runbook linked from its notification.",
            [prom('count(ALERTS{alertstate="firing", alertname!="Watchdog"}) or vector(0)')],
            unit="none", sparkline=False, thresholds=steps("green", (1, "red")), links=[to_slo],
        ))
        .with_panel(stat_panel(
            "Processes reporting",
            "Processes of the service whose telemetry still changes (recording rule "
            "service:process_instances_reporting:sum). ServiceDown pages when it drops to zero while the "
            "service should run.",
            [prom('sum(service:process_instances_reporting:sum{service_name=~"$service"})')],
            unit="none", decimals=0, sparkline=False, thresholds=steps("red", (1, "green")),
        ))
        .with_row(row("Traffic"))
        .with_panel(timeseries_panel(
            "Requests by route",
            "Requests per second per http.route. Click a series for that route on the Performance dashboard.",
            [prom(f"sum by (http_route) ({rate(f'{CALLS}{ALL}')})", "{{http_route}}")],
            unit="reqps", width=8, data_links=[route_link("Route on Performance", UID_PERFORMANCE)],
        ))
        .with_panel(timeseries_panel(
            "Error ratio (5xx) by route",
            "Share of each route's requests answered with a 5xx; dashed lines at the 0.5% warning and 1% "
            "critical alert thresholds.",
            [prom(ratio_or_zero(rate(f"{CALLS}{ERRORS}"), rate(f"{CALLS}{ALL}"), by="http_route"), "{{http_route}}")],
            unit="percentunit", width=8, threshold_lines=True,
            thresholds=steps("transparent", (o.ERROR_RATIO_WARNING, "yellow"), (o.ERROR_RATIO_CRITICAL, "red")),
            data_links=[route_link("Route on Performance", UID_PERFORMANCE)],
        ))
        .with_panel(timeseries_panel(
            "p95 latency by route",
            "95th percentile duration per route, with exemplars: each dot is a real request - click it to open "
            "its trace in Jaeger. Dashed lines at 500 ms and 1 s.",
            [prom(quantile(0.95, f"{DURATION_BUCKET}{ALL}", by="http_route"), "{{http_route}}", exemplar=True)],
            unit="s", width=8, threshold_lines=True,
            thresholds=steps("transparent", (o.P95_LATENCY_WARNING_SECONDS, "yellow"), (o.P95_LATENCY_CRITICAL_SECONDS, "red")),
            data_links=[route_link("Route on Performance", UID_PERFORMANCE)],
        ))
        .with_row(row("Telemetry pipeline (OpenTelemetry Collector)"))
        .with_panel(timeseries_panel(
            "Collector: accepted vs refused",
            "Spans, log records and metric points per second that the collector's receivers accepted, and those "
            "they refused (memory limiter or a failing pipeline). Refused data is lost for good.",
            [
                prom('sum(rate(otelcol_receiver_accepted_spans{job="otel-collector"}[$__rate_interval]))', "spans accepted"),
                prom('sum(rate(otelcol_receiver_accepted_log_records{job="otel-collector"}[$__rate_interval]))', "log records accepted"),
                prom('sum(rate(otelcol_receiver_accepted_metric_points{job="otel-collector"}[$__rate_interval]))', "metric points accepted"),
                prom('sum(rate(otelcol_receiver_refused_spans{job="otel-collector"}[$__rate_interval]))', "spans refused"),
                prom('sum(rate(otelcol_receiver_refused_log_records{job="otel-collector"}[$__rate_interval]))', "log records refused"),
                prom('sum(rate(otelcol_receiver_refused_metric_points{job="otel-collector"}[$__rate_interval]))', "metric points refused"),
            ],
            unit="short", width=8,
        ))
        .with_panel(timeseries_panel(
            "Collector: exported vs failed",
            "Per exporter, items per second delivered (Jaeger, VictoriaLogs, the Prometheus endpoint) and items "
            "whose export failed after all retries. Failures mean traces or logs are missing downstream.",
            [
                prom('sum by (exporter) (rate(otelcol_exporter_sent_spans{job="otel-collector"}[$__rate_interval]))', "{{exporter}} spans sent"),
                prom('sum by (exporter) (rate(otelcol_exporter_sent_log_records{job="otel-collector"}[$__rate_interval]))', "{{exporter}} log records sent"),
                prom('sum by (exporter) (rate(otelcol_exporter_sent_metric_points{job="otel-collector"}[$__rate_interval]))', "{{exporter}} metric points sent"),
                prom('sum(rate(otelcol_exporter_send_failed_spans{job="otel-collector"}[$__rate_interval])) or vector(0)', "spans failed"),
                prom('sum(rate(otelcol_exporter_send_failed_log_records{job="otel-collector"}[$__rate_interval])) or vector(0)', "log records failed"),
            ],
            unit="short", width=8,
        ))
        .with_panel(timeseries_panel(
            "Collector: exporter queue fill",
            "How full each exporter's sending queue is. A queue that stays near 100% means the backend is "
            "down or too slow and new data will be dropped; warning at 80%.",
            [prom('max by (exporter) (otelcol_exporter_queue_size{job="otel-collector"} / otelcol_exporter_queue_capacity{job="otel-collector"})', "{{exporter}}")],
            unit="percentunit", width=8, min_value=0, max_value=1, threshold_lines=True,
            thresholds=steps("transparent", (o.RESOURCE_USE_WARNING, "red")),
        ))
        .with_panel(nodegraph_panel(
            "Service map",
            "Which services call which, from the parent/child spans Jaeger holds (its dependencies view). "
            "The simulator -> hitl-review edge is the traffic; hitl-review -> hitl-review are its internal spans.",
            [jaeger_dependency_graph()],
            width=10,
        ))
        .with_panel(timeseries_panel(
            "Log records by severity",
            "Log records per interval that $service wrote to VictoriaLogs, by severity. A rise in WARN/ERROR is "
            "the cue to open the Business or Performance dashboard and the logs of the slow traces.",
            [logsql('service.name:="$service" | stats by (severity_text) count() records', stats=True, legend="{{severity_text}}")],
            unit="short", width=10, height=10, bars=True, stack=True, legend_calcs=("sum",),
            datasource=VICTORIALOGS, links=[to_business],
        ))
        .with_panel(stat_panel(
            "Backends down",
            "Scrape targets of this stack that Prometheus cannot reach right now (collector, Jaeger, "
            "VictoriaLogs, Alertmanager, Prometheus itself).",
            [prom("count(up == 0) or vector(0)")],
            unit="none", sparkline=False, thresholds=steps("green", (1, "red")), width=4, height=10,
        ))
    )
