"""SLO: for each SLO of the service its SLI over the SLO period, the error budget left, the burn
rate over every window the multi-window burn-rate alerts use, and the budget consumed over time -
plus, at the top, the routes burning the budget fastest, which lead to the Performance dashboard.

The SLO numbers are read from the recording rules Sloth generates from slo/specs
(prometheus/rules/slo-*.yml), so the dashboard shows exactly what the burn-rate alerts evaluate.
Those rules aggregate over routes; the per-route panels compute the same ratios from the
span-derived series directly."""

from dashboards import objectives as o
from dashboards.objectives import Slo
from dashboards.panels import (
    CALLS, DURATION_COUNT, DURATION_BUCKET, UID_PERFORMANCE, UID_SLO, bargauge_panel, env_variable, new_dashboard,
    prom, rate, ratio_or_zero, route_link, row, server_spans, service_variable, stat_panel, steps, timeseries_panel,
)

ALL = server_spans(route=False)
# Sloth's recording rules join on these labels; sloth_window tells the windows apart.
SLOTH_JOIN = "on (sloth_id, sloth_slo, sloth_service) group_left"
FAST = f'le="{o.LATENCY_SLO_BUCKET}"'


def sloth(record: str, slo: Slo) -> str:
    """A Sloth recording rule of this SLO for the chosen service."""
    return f'{record}{{sloth_service=~"$service", sloth_slo="{slo.name}"}}'


def sli(slo: Slo) -> str:
    """Share of good requests over the SLO period (1 - bad ratio), from the rules."""
    return f"1 - ({sloth('slo:period_burn_rate:ratio', slo)} * {SLOTH_JOIN} {sloth('slo:error_budget:ratio', slo)})"


def window_burn_rate(slo: Slo, window: str) -> str:
    """Burn rate over one alert window: its bad ratio divided by the error budget."""
    return f"{sloth(f'slo:sli_error:ratio_rate{window}', slo)} / {SLOTH_JOIN} {sloth('slo:error_budget:ratio', slo)}"


def route_burn_rate(slo: Slo, window: str) -> str:
    """Burn rate per http_route, from the span-derived series (the rules have no route)."""
    if slo.kind == "errors":
        bad = ratio_or_zero(rate(f"{CALLS}{server_spans(slo.bad_matcher, route=False)}", window),
                            rate(f"{CALLS}{ALL}", window), by="http_route")
    else:
        every = f"sum by (http_route) ({rate(DURATION_COUNT + ALL, window)})"
        fast = f"sum by (http_route) ({rate(DURATION_BUCKET + server_spans(FAST, route=False), window)})"
        bad = f"({every} - {fast}) / {every}"
    return f"({bad}) / {slo.error_budget}"


def _burning_routes(slo: Slo):
    return bargauge_panel(
        f"Routes burning the {slo.title.lower()} budget (1 h)",
        f"Burn rate of the {slo.title.lower()} SLO per route over the last hour, fastest first. Above 14.4 the "
        "SLO pages; above 1 the route spends budget faster than the SLO allows. Click a route to open it on "
        "the Performance dashboard, then pick an exemplar on its latency panel.",
        [prom(f"sort_desc({route_burn_rate(slo, '1h')})", "{{http_route}}", instant=True)],
        unit="suffix:x", width=12, height=8, min_value=0,
        thresholds=steps("green", (o.BURN_RATE_TICKET_SLOW, "yellow"), (o.BURN_RATE_PAGE_SLOW, "orange"),
                         (o.BURN_RATE_PAGE_FAST, "red")),
        data_links=[route_link("Open this route on Performance", UID_PERFORMANCE)],
    )


def _slo_row(dashboard, slo: Slo):
    budget_percent = f"{slo.error_budget * 100:g}%"
    return (
        dashboard
        .with_row(row(f"{slo.title}: {slo.objective * 100:g}% over {slo.window}"))
        .with_panel(stat_panel(
            f"{slo.title} SLI ({slo.window})",
            f"{slo.description} The SLI is the share of good requests over the whole {slo.window} period; green "
            f"at or above the {slo.objective * 100:g}% objective. Read from the recording rules Sloth generates "
            "(prometheus/rules/slo-*.yml), the same ones the burn-rate alerts evaluate.",
            [prom(sli(slo))],
            unit="percentunit", decimals=3, width=4, height=8, sparkline=False,
            thresholds=steps("red", (slo.objective, "green")),
        ))
        .with_panel(stat_panel(
            f"{slo.title} error budget left",
            f"Share of the {slo.window} error budget ({budget_percent} of requests may be bad) not yet spent. "
            "At 0% the SLO is broken for this window; negative means overspent.",
            [prom(sloth("slo:period_error_budget_remaining:ratio", slo))],
            unit="percentunit", decimals=1, width=4, height=8, sparkline=False,
            thresholds=steps("red", (0.25, "yellow"), (0.5, "green")),
        ))
        .with_panel(timeseries_panel(
            f"{slo.title} burn rate per alert window",
            "Burn rate over each window the multi-window alerts use. Pages when both 1h and 5m exceed 14.4, "
            "or 6h and 30m exceed 6; tickets when 1d and 2h exceed 3, or 3d and 6h exceed 1 (dashed lines).",
            [prom(window_burn_rate(slo, window), window) for window in o.BURN_RATE_WINDOWS],
            unit="suffix:x", width=8, height=8, threshold_lines=True, legend_calcs=("lastNotNull", "max"),
            thresholds=steps("transparent", (o.BURN_RATE_TICKET_SLOW, "yellow"), (o.BURN_RATE_TICKET_FAST, "orange"),
                             (o.BURN_RATE_PAGE_SLOW, "red"), (o.BURN_RATE_PAGE_FAST, "dark-red")),
        ))
        .with_panel(timeseries_panel(
            f"{slo.title} error budget consumed",
            f"Share of the error budget spent over the trailing {slo.window} window, at each moment. 100% "
            "(dashed) is the whole budget.",
            [prom(sloth("slo:period_burn_rate:ratio", slo), "consumed")],
            unit="percentunit", width=8, height=8, min_value=0, threshold_lines=True, legend_calcs=("lastNotNull",),
            thresholds=steps("transparent", (1, "red")),
        ))
    )


def build():
    dashboard = (
        new_dashboard(
            UID_SLO,
            "HITL / SLOs",
            "Availability, latency and error-rate SLOs: SLI, error budget left, burn rates per alert window.",
            "slo",
        )
        .with_variable(env_variable())
        .with_variable(service_variable())
        .with_row(row("Which route burns the budget"))
    )
    for slo in o.SLOS:
        if slo.name in ("availability", "latency"):
            dashboard.with_panel(_burning_routes(slo))
    for slo in o.SLOS:
        dashboard = _slo_row(dashboard, slo)
    return dashboard
