"""The numbers the dashboards draw their thresholds at, read from thresholds.yaml (the one
source of every threshold; tests/test_thresholds.py holds the alert rules, the SLO specs and the
resource limits to the same file): a red line that disagrees with the pager misleads."""

from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "thresholds.yaml").read_text())
_ALERTS = CONFIG["alerts"]

# Alert thresholds (HighErrorRate / ElevatedErrorRate, HighLatency / ElevatedLatency).
ERROR_RATIO_WARNING = _ALERTS["ElevatedErrorRate"]["threshold"]
ERROR_RATIO_CRITICAL = _ALERTS["HighErrorRate"]["threshold"]
P95_LATENCY_WARNING_SECONDS = _ALERTS["ElevatedLatency"]["threshold"]
P95_LATENCY_CRITICAL_SECONDS = _ALERTS["HighLatency"]["threshold"]
RESOURCE_USE_WARNING = _ALERTS["HighCPUUsage"]["threshold"]  # also the memory and the DB pool panels
ACTIONS_OVERDUE_SECONDS = _ALERTS["ActionsOverdue"]["threshold"]

# Panels no alert covers: (yellow from, red from).
WAITING_REVIEWS = tuple(CONFIG["dashboards"]["waiting_reviews"])
OLDEST_WAITING_REVIEW_SECONDS = tuple(CONFIG["dashboards"]["oldest_waiting_review_seconds"])
FAILED_ACTION_RATIO = tuple(CONFIG["dashboards"]["failed_action_ratio"])

# Multi-window multi-burn-rate thresholds of the Google SRE workbook
# (https://sre.google/workbook/alerting-on-slos/): a burn rate of
# 14.4 over 1h spends 2% of a 30-day budget, 6 over 6h 5%, 3 over 1d 10%, 1 over 3d 10%.
BURN_RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
BURN_RATE_PAGE_FAST = CONFIG["burn_rates"]["page_fast"]
BURN_RATE_PAGE_SLOW = CONFIG["burn_rates"]["page_slow"]
BURN_RATE_TICKET_FAST = CONFIG["burn_rates"]["ticket_fast"]
BURN_RATE_TICKET_SLOW = CONFIG["burn_rates"]["ticket_slow"]

LATENCY_SLO_THRESHOLD_SECONDS = CONFIG["slos"]["latency"]["threshold_seconds"]
# The span_metrics connector has a bucket boundary exactly here (otel-collector/config.yaml),
# so "faster than 500 ms" is an exact bucket, not an interpolation.
LATENCY_SLO_BUCKET = f"{LATENCY_SLO_THRESHOLD_SECONDS:g}"


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
        objective=CONFIG["slos"]["availability"]["objective"],
        window=CONFIG["slos"]["availability"]["window"],
        kind="errors",
        bad_matcher='http_response_status_code=~"5.."',
        description="99.9% of requests answered without a 5xx over 30 days (43.2 minutes of errors a month).",
    ),
    Slo(
        name="latency",
        title="Latency",
        objective=CONFIG["slos"]["latency"]["objective"],
        window=CONFIG["slos"]["latency"]["window"],
        kind="latency",
        description="95% of requests answered in under 500 ms over 7 days (p95 < 500 ms).",
    ),
    Slo(
        name="error-rate",
        title="Error rate",
        objective=CONFIG["slos"]["error-rate"]["objective"],
        window=CONFIG["slos"]["error-rate"]["window"],
        kind="errors",
        bad_matcher='status_code="STATUS_CODE_ERROR"',
        description="Under 0.1% of requests end in an error span status over 24 hours.",
    ),
)
