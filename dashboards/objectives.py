"""The numbers the dashboards draw their thresholds at: the SLOs and the alert thresholds of the
plan (shared/mission/FASE_3.13_ADVANCED_MONITORING_PLAN.md, issue 4). Keep them equal to the
values in prometheus/rules/: a red line that disagrees with the pager misleads."""

from dataclasses import dataclass

# Alert thresholds (HighErrorRate / ElevatedErrorRate, HighLatency / ElevatedLatency).
ERROR_RATIO_WARNING = 0.005
ERROR_RATIO_CRITICAL = 0.01
P95_LATENCY_WARNING_SECONDS = 0.5
P95_LATENCY_CRITICAL_SECONDS = 1.0
RESOURCE_USE_WARNING = 0.8  # HighCPUUsage / HighMemoryUsage, and the DB pool

# Multi-window multi-burn-rate thresholds of the Google SRE workbook (issue 4): a burn rate of
# 14.4 over 1h spends 2% of a 30-day budget, 6 over 6h 5%, 3 over 1d 10%, 1 over 3d 10%.
BURN_RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
BURN_RATE_PAGE_FAST = 14.4
BURN_RATE_PAGE_SLOW = 6.0
BURN_RATE_TICKET_FAST = 3.0
BURN_RATE_TICKET_SLOW = 1.0

LATENCY_SLO_THRESHOLD_SECONDS = 0.5
# The span_metrics connector has a bucket boundary exactly here (otel-collector/config.yaml),
# so "faster than 500 ms" is an exact bucket, not an interpolation.
LATENCY_SLO_BUCKET = "0.5"


@dataclass(frozen=True)
class Slo:
    """One SLO of the HITL review service, measured on its server spans."""

    name: str
    title: str
    objective: float
    window: str
    # What makes a request bad, as a PromQL fragment: "errors" compares calls matching
    # bad_matcher with all calls; "latency" compares calls slower than the threshold bucket.
    kind: str
    bad_matcher: str = ""
    description: str = ""

    @property
    def error_budget(self) -> float:
        return round(1 - self.objective, 10)


SLOS = (
    Slo(
        name="availability",
        title="Availability",
        objective=0.999,
        window="30d",
        kind="errors",
        bad_matcher='http_response_status_code=~"5.."',
        description="99.9% of requests answered without a 5xx over 30 days (43.2 minutes of errors a month).",
    ),
    Slo(
        name="latency",
        title="Latency",
        objective=0.95,
        window="7d",
        kind="latency",
        description="95% of requests answered in under 500 ms over 7 days (p95 < 500 ms).",
    ),
    Slo(
        name="error-rate",
        title="Error rate",
        objective=0.999,
        window="1d",
        kind="errors",
        bad_matcher='status_code="STATUS_CODE_ERROR"',
        description="Under 0.1% of requests end in an error span status over 24 hours.",
    ),
)
