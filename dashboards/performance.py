"""Performance: latency and throughput per route with exemplars (the way from a slow request to
its trace), the latency heatmap, and the USE view of the resources behind it: database pool,
cache, process CPU and memory."""

from dashboards import objectives as o
from dashboards.panels import (
    on_right_axis,
    CALLS, DURATION_BUCKET, JAEGER, UID_PERFORMANCE, UID_SLO, app_metric, bargauge_panel, env_variable, heatmap_panel,
    jaeger_search, link_to, new_dashboard, prom, quantile, rate, route_variable, row, selector,
    server_spans, service_variable, stat_panel, steps, table_panel, timeseries_panel, SERVICE,
)

SPANS = server_spans()
POOL = "db_client_connection"
USED = 'db_client_connection_state="used"'
# Recorded: Redis' evictions counted once across processes (prometheus/rules/recording.yml).
CACHE_EVICTIONS = "service_cache_backend:hitl_cache_evictions:rate5m"


def _hit_ratio() -> str:
    """hits / (hits + misses) per key space, 0 or 1 when only one of the two counters exists yet."""
    hits = f"sum by (hitl_cache_key_space) ({rate(app_metric('hitl_cache_hits_total'))})"
    misses = f"sum by (hitl_cache_key_space) ({rate(app_metric('hitl_cache_misses_total'))})"
    hits_or_zero = f"({hits} or {misses} * 0)"
    misses_or_zero = f"({misses} or {hits} * 0)"
    return f"{hits_or_zero} / ({hits_or_zero} + {misses_or_zero})"


def _latency_thresholds():
    return steps("transparent", (o.P95_LATENCY_WARNING_SECONDS, "yellow"), (o.P95_LATENCY_CRITICAL_SECONDS, "red"))


def build():
    return (
        new_dashboard(
            UID_PERFORMANCE,
            "HITL / Performance",
            "Latency and throughput per route with exemplars linking to traces; database pool, cache and process resources.",
            "performance",
        )
        .with_variable(env_variable())
        .with_variable(service_variable())
        .with_variable(route_variable())
        .with_row(row("Latency and throughput: $route"))
        .with_panel(timeseries_panel(
            "Latency per route: p50 / p95 / p99",
            "Request duration percentiles per http.route from the span-derived histogram. Exemplars are on: "
            "each dot is one real request with its trace_id - hover it and choose 'Open trace in Jaeger'. "
            "Dashed lines: 500 ms (latency SLO, ElevatedLatency) and 1 s (HighLatency).",
            [
                prom(quantile(0.50, f"{DURATION_BUCKET}{SPANS}", by="http_route"), "p50 {{http_route}}", exemplar=True),
                prom(quantile(0.95, f"{DURATION_BUCKET}{SPANS}", by="http_route"), "p95 {{http_route}}", exemplar=True),
                prom(quantile(0.99, f"{DURATION_BUCKET}{SPANS}", by="http_route"), "p99 {{http_route}}", exemplar=True),
            ],
            unit="s", width=24, height=10, threshold_lines=True, thresholds=_latency_thresholds(),
            legend_calcs=("mean", "max", "lastNotNull"),
        ))
        .with_panel(heatmap_panel(
            "Latency distribution",
            "How many requests fell in each duration bucket over time (the connector's buckets, 5 ms to 10 s). "
            "A second band above the main one is a slow path; its exemplars open the traces.",
            [prom(f"sum by (le) (increase({DURATION_BUCKET}{SPANS}[$__rate_interval]))", "{{le}}", exemplar=True,
                  heatmap_format=True)],
            unit="s", width=12, height=9,
        ))
        .with_panel(timeseries_panel(
            "Throughput by route and status",
            "Requests per second per route and HTTP status code. 4xx are the callers' mistakes (they do not "
            "count against the SLOs); 5xx are ours.",
            [prom(f"sum by (http_route, http_response_status_code) ({rate(f'{CALLS}{SPANS}')})",
                  "{{http_route}} {{http_response_status_code}}")],
            unit="reqps", width=12, height=9, stack=True,
        ))
        .with_panel(timeseries_panel(
            "Slowest work inside the service (p95 by span)",
            "p95 duration of the spans the service makes while answering: SQL statements, Redis commands, "
            "code-host calls and actions. Exemplars link to traces where that span was slow.",
            [prom(quantile(0.95, DURATION_BUCKET + selector(SERVICE, 'span_kind!="SPAN_KIND_SERVER"'), by="span_name"),
                  "{{span_name}}", exemplar=True)],
            unit="s", width=12,
        ))
        .with_panel(table_panel(
            "Recent traces of $service",
            "The latest traces Jaeger holds for the service, newest first. Click a trace ID to open it; from a "
            "span, 'Logs for this span' opens its log records and 'Metrics for this span' its route's RED metrics.",
            [jaeger_search("$service", limit=20)],
            width=12, datasource=JAEGER,
        ))
        .with_row(row("Database connection pool (USE)"))
        .with_panel(timeseries_panel(
            "Pool connections",
            "Connections of the SQLAlchemy pool in use and idle, and the most it will open (pool size plus "
            "overflow). Used reaching max means requests start to queue for a connection.",
            [
                prom(f"sum by (db_client_connection_state) ({app_metric(f'{POOL}_count')})", "{{db_client_connection_state}}"),
                prom(f"sum({app_metric(f'{POOL}_max')})", "max"),
            ],
            unit="short", width=8,
        ))
        .with_panel(stat_panel(
            "Pool utilisation",
            "Connections in use divided by the most the pool will open. Red from 80%: the pool is close to "
            "exhaustion and checkouts will start to wait (see the next panels).",
            [prom(f"sum({app_metric(f'{POOL}_count', USED)}) / sum({app_metric(f'{POOL}_max')})")],
            unit="percentunit", width=4, height=8, thresholds=steps("green", (o.RESOURCE_USE_WARNING, "red")),
        ))
        .with_panel(timeseries_panel(
            "Checkout wait time",
            "How long a request waited for a pooled connection (p95, p99). Near zero normally; growth means "
            "pool saturation or a slow or unreachable database. The app records no exemplars on its own "
            "metrics, so use the latency panel above to reach traces.",
            [
                prom(quantile(0.95, app_metric(f"{POOL}_wait_time_seconds_bucket")), "p95"),
                prom(quantile(0.99, app_metric(f"{POOL}_wait_time_seconds_bucket")), "p99"),
            ],
            unit="s", width=6,
        ))
        .with_panel(timeseries_panel(
            "Checkouts waiting",
            "Requests waiting for a connection right now (saturation). Anything above zero for long means the "
            "pool is too small for the load or connections are held too long.",
            [prom(f"sum({app_metric(f'{POOL}_pending_requests')})", "waiting")],
            unit="short", width=6,
        ))
        .with_row(row("Cache"))
        .with_panel(timeseries_panel(
            "Cache hit ratio",
            "Share of cache lookups that found a value, per key space (e.g. the /stats summary). A drop means "
            "more load reaches the database.",
            [prom(_hit_ratio(), "{{hitl_cache_key_space}}")],
            unit="percentunit", width=12, min_value=0, max_value=1,
        ))
        .with_panel(timeseries_panel(
            "Cache lookups, errors and evictions",
            "Lookups per second by result, cache operations that failed (the service carries on without the "
            "cache, at the database's expense) and entries evicted (Redis' server-wide count once, however many "
            "processes report it; in-process caches summed: service_cache_backend:hitl_cache_evictions:rate5m).",
            [
                prom(f"sum({rate(app_metric('hitl_cache_hits_total'))}) or vector(0)", "hits"),
                prom(f"sum({rate(app_metric('hitl_cache_misses_total'))})", "misses"),
                prom(f"sum({rate(app_metric('hitl_cache_errors_total'))}) or vector(0)", "errors"),
                prom(f"sum({app_metric(CACHE_EVICTIONS)})", "evictions"),
            ],
            unit="ops", width=12,
        ))
        .with_row(row("Process (USE)"))
        .with_panel(timeseries_panel(
            "CPU use of its limit",
            "CPU each process of the service uses over 5 minutes, as a share of its CPU limit "
            "(service:process_cpu_limit_cores, one core for a uvicorn worker). HighCPUUsage warns above 80% "
            "for 15 minutes. Read from the recording rule the alert uses.",
            [prom('max by (instance) (instance:process_cpu_utilization:ratio_rate5m{service_name=~"$service"})', "{{instance}}")],
            unit="percentunit", width=6, min_value=0, threshold_lines=True,
            thresholds=steps("transparent", (o.RESOURCE_USE_WARNING, "red")),
        ))
        .with_panel(timeseries_panel(
            "CPU time by kind",
            "CPU seconds per second the service's processes spend in user code and in the kernel (1 = one "
            "full core). A rise in system time points at I/O or many small writes.",
            [prom(f"sum by (type) ({rate(app_metric('process_cpu_time_seconds_total'))})", "{{type}}")],
            unit="short", width=6, stack=True,
        ))
        .with_panel(timeseries_panel(
            "Memory use of its limit",
            "Resident memory of each process as a share of its memory limit (service:process_memory_limit_bytes). "
            "HighMemoryUsage warns above 80% for 15 minutes. Read from the recording rule the alert uses.",
            [prom('max by (instance) (instance:process_memory_utilization:ratio{service_name=~"$service"})', "{{instance}}")],
            unit="percentunit", width=6, min_value=0, threshold_lines=True,
            thresholds=steps("transparent", (o.RESOURCE_USE_WARNING, "red")),
        ))
        .with_panel(on_right_axis(timeseries_panel(
            "Memory and threads",
            "Resident memory (physical RAM in use) of the service's processes, and their thread count on the "
            "right axis. A steady climb of either is a leak.",
            [
                prom(f"sum({app_metric('process_memory_usage_bytes')})", "resident memory"),
                prom(f"sum({app_metric('process_thread_count')})", "threads"),
            ],
            unit="bytes", width=6,
        ), "threads", "short"))
        .with_row(row("Where to next"))
        .with_panel(bargauge_panel(
            "Routes by p95 latency (now)",
            "Each route's current p95, slowest first - click a bar to focus this dashboard on that route, or "
            "open the SLO dashboard to see whether it burns the latency budget.",
            [prom(f"sort_desc({quantile(0.95, f'{DURATION_BUCKET}{server_spans(route=False)}', by='http_route', window='5m')})",
                  "{{http_route}}", instant=True)],
            unit="s", width=24, height=7,
            thresholds=steps("green", (o.P95_LATENCY_WARNING_SECONDS, "yellow"), (o.P95_LATENCY_CRITICAL_SECONDS, "red")),
            data_links=[
                link_to("Focus on this route", UID_PERFORMANCE, params="var-route=${__field.labels.http_route}"),
                link_to("SLO dashboard", UID_SLO),
            ],
        ))
    )
