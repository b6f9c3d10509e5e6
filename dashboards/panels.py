"""Building blocks of the four dashboards: datasource references, PromQL selectors, queries,
panel factories (each one requires a description and a unit), variables and links.

The dashboards are written against the classic dashboard JSON model (what file provisioning
loads in every Grafana release we support); the SDK marks its builder as superseded by the v2
schema, a warning we silence here on purpose.
"""

import json
import warnings
from collections.abc import Iterable, Sequence

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import (bargauge, common, dashboard, heatmap, logs, nodegraph, prometheus,
                                                 stat, table, timeseries)
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as common_model
    from grafana_foundation_sdk.models import dashboard as dashboard_model
    from grafana_foundation_sdk.models import prometheus as prometheus_model
    from grafana_foundation_sdk.models.common import DataSourceRef

# --- datasources (the UIDs of grafana/provisioning/datasources/datasources.yaml) -------------

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
JAEGER = DataSourceRef(type_val="jaeger", uid="jaeger")
VICTORIALOGS = DataSourceRef(type_val="victoriametrics-logs-datasource", uid="victorialogs")

# --- dashboards --------------------------------------------------------------------------------

TAG = "hitl"
UID_OVERVIEW = "hitl-overview"
UID_PERFORMANCE = "hitl-performance"
UID_BUSINESS = "hitl-business"
UID_SLO = "hitl-slo"

# --- PromQL selectors --------------------------------------------------------------------------
# The span_metrics connector's RED series; server spans are the requests the service answered.
CALLS = "traces_span_metrics_calls_total"
DURATION_BUCKET = "traces_span_metrics_duration_seconds_bucket"
DURATION_COUNT = "traces_span_metrics_duration_seconds_count"
SERVER = 'span_kind="SPAN_KIND_SERVER"'
SERVICE = 'service_name=~"$service", deployment_environment_name=~"$env"'
ROUTE = 'http_route=~"$route"'
FIVE_XX = 'http_response_status_code=~"5.."'


def selector(*matchers: str) -> str:
    """`{a, b, ...}` from label matchers, skipping empty ones."""
    return "{" + ", ".join(m for m in matchers if m) + "}"


def server_spans(*extra: str, route: bool = True) -> str:
    """Selector for the server spans of the chosen service (and routes)."""
    return selector(SERVICE, SERVER, ROUTE if route else "", *extra)


def app_metric(name: str, *extra: str) -> str:
    """An app metric of the chosen service, e.g. hitl_reviews_pending{...}."""
    return name + selector(SERVICE, *extra)


def ratio_or_zero(bad: str, total: str, by: str = "") -> str:
    """bad/total where a group with traffic but no bad calls reads 0 instead of vanishing.

    `(A or B * 0) / B`: a route with no errors has no 5xx series, so A alone would hide it;
    with no traffic at all the result stays empty rather than a made-up 0.
    """
    grouping = f" by ({by})" if by else ""
    return f"(sum{grouping} ({bad}) or sum{grouping} ({total}) * 0) / sum{grouping} ({total})"


def rate(metric_selector: str, window: str = "$__rate_interval") -> str:
    return f"rate({metric_selector}[{window}])"


def quantile(q: float, bucket_selector: str, by: str = "", window: str = "$__rate_interval") -> str:
    labels = ", ".join(["le", *([by] if by else [])])
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(bucket_selector, window)}))"


# --- queries -----------------------------------------------------------------------------------


def prom(expr: str, legend: str = "", *, exemplar: bool = False, instant: bool = False, heatmap_format: bool = False,
         table_format: bool = False) -> prometheus.Dataquery:
    query = prometheus.Dataquery().datasource(PROMETHEUS).expr(expr).editor_mode(prometheus_model.QueryEditorMode.CODE)
    if legend:
        query.legend_format(legend)
    if exemplar:
        query.exemplar(True)
    if instant:
        query.instant()
    else:
        query.range()
    if heatmap_format:
        query.format(prometheus_model.PromQueryFormat.HEATMAP)
    if table_format:
        query.format(prometheus_model.PromQueryFormat.TABLE)
    return query


class _PluginQuery(cogvariants.Dataquery):
    """A query for a datasource the SDK has no types for (Jaeger, VictoriaLogs): its JSON as is."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload

    def to_json(self) -> dict:
        return dict(self.payload)


class PluginQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, payload: dict) -> None:
        self._query = _PluginQuery(payload)

    def ref_id(self, ref: str) -> "PluginQuery":
        self._query.payload["refId"] = ref
        return self

    def build(self) -> cogvariants.Dataquery:
        return self._query


def logsql(expr: str, *, stats: bool = False, legend: str = "") -> PluginQuery:
    """A VictoriaLogs query: raw records, or (stats=True) a time series of a `| stats` pipe."""
    payload = {
        "datasource": VICTORIALOGS.to_json(),
        "editorMode": "code",
        "expr": expr,
        "queryType": "statsRange" if stats else "instant",
    }
    if legend:
        payload["legendFormat"] = legend
    return PluginQuery(payload)


def jaeger_search(service: str, *, limit: int = 20, operation: str = "", tags: str = "") -> PluginQuery:
    payload = {"datasource": JAEGER.to_json(), "queryType": "search", "service": service, "limit": limit}
    if operation:
        payload["operation"] = operation
    if tags:
        payload["tags"] = tags
    return PluginQuery(payload)


def jaeger_dependency_graph() -> PluginQuery:
    return PluginQuery({"datasource": JAEGER.to_json(), "queryType": "dependencyGraph"})


def _with_ref_ids(queries: Sequence) -> list:
    for index, query in enumerate(queries):
        query.ref_id(chr(ord("A") + index))
    return list(queries)


# --- thresholds, links -------------------------------------------------------------------------


def steps(base: str, *levels: tuple[float, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: `base` colour below the first level, then each (value, colour)."""
    return (
        dashboard.ThresholdsConfig()
        .mode(dashboard_model.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_model.Threshold(value=None, color=base)]
               + [dashboard_model.Threshold(value=value, color=color) for value, color in levels])
    )


def link_to(title: str, uid: str, *, params: str = "") -> dashboard.DashboardLink:
    """A panel link to another dashboard, keeping the time range and the service variables."""
    query = "${__url_time_range}&${env:queryparam}&${service:queryparam}" + (f"&{params}" if params else "")
    return dashboard.DashboardLink(title).type(dashboard_model.DashboardLinkType.LINK).url(f"/d/{uid}?{query}")


def route_link(title: str, uid: str) -> dashboard.DashboardLink:
    """A data link from a series/bar labelled with http_route to that route on another dashboard."""
    return link_to(title, uid, params="var-route=${__field.labels.http_route}")


# --- panels ------------------------------------------------------------------------------------


def _common(panel, title: str, description: str, queries: Sequence, *, unit: str, width: int, height: int,
            datasource: DataSourceRef = PROMETHEUS, thresholds=None, links: Iterable = (),
            data_links: Iterable = (), decimals: float | None = None, min_value: float | None = None,
            max_value: float | None = None, no_value: str = ""):
    if not description.strip():
        raise ValueError(f"panel {title!r} needs a description")
    panel.title(title).description(description).datasource(datasource).unit(unit).span(width).height(height)
    panel.targets(_with_ref_ids(queries))
    if thresholds is not None:
        panel.thresholds(thresholds)
    if links:
        panel.links(list(links))
    if data_links:
        panel.data_links(list(data_links))
    if decimals is not None:
        panel.decimals(decimals)
    if min_value is not None:
        panel.min(min_value)
    if max_value is not None:
        panel.max(max_value)
    if no_value:
        panel.no_value(no_value)
    return panel


def timeseries_panel(title: str, description: str, queries: Sequence, *, unit: str, width: int = 12, height: int = 8,
                     stack: bool = False, threshold_lines: bool = False, legend_calcs: Sequence[str] = ("mean", "max"),
                     bars: bool = False, **kwargs) -> timeseries.Panel:
    panel = _common(timeseries.Panel(), title, description, queries, unit=unit, width=width, height=height, **kwargs)
    panel.legend(
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_model.LegendDisplayMode.TABLE if legend_calcs else common_model.LegendDisplayMode.LIST)
        .placement(common_model.LegendPlacement.BOTTOM)
        .calcs(list(legend_calcs))
    )
    panel.tooltip(common.VizTooltipOptions().mode(common_model.TooltipDisplayMode.MULTI).sort(common_model.SortOrder.DESCENDING))
    panel.fill_opacity(10).line_width(1)
    if bars:
        panel.draw_style(common_model.GraphDrawStyle.BARS).fill_opacity(60)
    if stack:
        panel.stacking(common.StackingConfig().mode(common_model.StackingMode.NORMAL))
    if threshold_lines:
        panel.thresholds_style(common.GraphThresholdsStyleConfig().mode(common_model.GraphThresholdsStyleMode.DASHED))
    return panel


def stat_panel(title: str, description: str, queries: Sequence, *, unit: str, width: int = 4, height: int = 5,
               sparkline: bool = True, calc: str = "lastNotNull", **kwargs) -> stat.Panel:
    panel = _common(stat.Panel(), title, description, queries, unit=unit, width=width, height=height, **kwargs)
    panel.reduce_options(common.ReduceDataOptions().calcs([calc]).values(False))
    panel.color_mode(common_model.BigValueColorMode.BACKGROUND)
    panel.graph_mode(common_model.BigValueGraphMode.AREA if sparkline else common_model.BigValueGraphMode.NONE)
    panel.text_mode(common_model.BigValueTextMode.AUTO)
    return panel


def bargauge_panel(title: str, description: str, queries: Sequence, *, unit: str, width: int = 12, height: int = 8,
                   **kwargs) -> bargauge.Panel:
    panel = _common(bargauge.Panel(), title, description, queries, unit=unit, width=width, height=height, **kwargs)
    panel.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    panel.display_mode(common_model.BarGaugeDisplayMode.GRADIENT)
    panel.orientation(common_model.VizOrientation.HORIZONTAL)
    panel.show_unfilled(True)
    return panel


def heatmap_panel(title: str, description: str, queries: Sequence, *, unit: str, width: int = 12, height: int = 8,
                  **kwargs) -> heatmap.Panel:
    # Unit goes on the y axis (bucket bounds); the cells are counts.
    panel = _common(heatmap.Panel(), title, description, queries, unit="short", width=width, height=height, **kwargs)
    panel.calculate(False)
    panel.y_axis(heatmap.YAxisConfig().unit(unit))
    panel.color(heatmap.HeatmapColorOptions().mode("scheme").scheme("Oranges").exponent(0.5).steps(64))
    panel.cell_gap(1)
    panel.show_legend()
    panel.exemplars_color("rgba(255,0,255,0.7)")
    return panel


def table_panel(title: str, description: str, queries: Sequence, *, unit: str = "none", width: int = 12,
                height: int = 8, datasource: DataSourceRef = PROMETHEUS, **kwargs) -> table.Panel:
    panel = _common(table.Panel(), title, description, queries, unit=unit, width=width, height=height,
                    datasource=datasource, **kwargs)
    panel.show_header(True)
    return panel


def logs_panel(title: str, description: str, queries: Sequence, *, width: int = 24, height: int = 10) -> logs.Panel:
    panel = _common(logs.Panel(), title, description, queries, unit="none", width=width, height=height,
                    datasource=VICTORIALOGS)
    panel.show_time(True).wrap_log_message(True).enable_log_details(True).sort_order(common_model.LogsSortOrder.DESCENDING)
    return panel


def nodegraph_panel(title: str, description: str, queries: Sequence, *, width: int = 12, height: int = 10) -> nodegraph.Panel:
    return _common(nodegraph.Panel(), title, description, queries, unit="none", width=width, height=height,
                   datasource=JAEGER)


def on_right_axis(panel, series: str, unit: str):
    """Draw one series of a time series panel against its own axis, on the right."""
    return panel.override_by_name(series, [
        dashboard_model.DynamicConfigValue(id_val="unit", value=unit),
        dashboard_model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
    ])


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


# --- variables ---------------------------------------------------------------------------------


def _all() -> dashboard_model.VariableOption:
    return dashboard_model.VariableOption(selected=True, text="All", value="$__all")


def _label_variable(name: str, label: str, description: str, query: str,
                    current: dashboard_model.VariableOption | None = None) -> dashboard.QueryVariable:
    """A Prometheus label_values variable; without `current` it is multi-value with All = .*."""
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(dashboard_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
    )
    if current is not None:
        return variable.current(current)
    return variable.multi(True).include_all(True).all_value(".*").current(_all())


def env_variable() -> dashboard.QueryVariable:
    return _label_variable("env", "Environment", "deployment.environment.name of the services (resource attribute).",
                           f"label_values({CALLS}, deployment_environment_name)")


def service_variable() -> dashboard.QueryVariable:
    return _label_variable(
        "service", "Service", "service.name of a service that answers requests (has server spans).",
        f'label_values({CALLS}{{{SERVER}, deployment_environment_name=~"$env"}}, service_name)',
        current=dashboard_model.VariableOption(selected=True, text="hitl-review", value="hitl-review"))


def route_variable() -> dashboard.QueryVariable:
    return _label_variable("route", "Route", "http.route templates of the service (e.g. /api/v1/reviews/{review_id}).",
                           f"label_values({CALLS}{{{SERVER}, {SERVICE}}}, http_route)")


# --- dashboards --------------------------------------------------------------------------------


def new_dashboard(uid: str, title: str, description: str, *tags: str) -> dashboard.Dashboard:
    """A dashboard with the shared settings and a drop-down of links to the other HITL dashboards."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *tags])
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            dashboard.DashboardLink("HITL dashboards")
            .type(dashboard_model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def to_json(builder: dashboard.Dashboard) -> str:
    """The dashboard as provisioned JSON: stable key order and panel ids numbered 1..n."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    next_id = 1
    for panel in model.get("panels", []):
        for item in [panel, *panel.get("panels", [])]:
            item["id"] = next_id
            next_id += 1
    return json.dumps(model, indent=2, sort_keys=True) + "\n"
