"""The SLO rules are generated from slo/specs by the pinned Sloth (`python -m generate`; that
they are up to date is tests/test_generated.py's check) and committed: they must carry the
service's three SLOs with the burn-rate windows of the SRE workbook."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.alerting.rules import REPO, RULES_DIR

# name -> (period, objective, period in days) of the three SLOs.
SLOS = {"availability": ("30d", 0.999, 30), "latency": ("7d", 0.95, 7), "error-rate": ("1d", 0.999, 1)}
# Burn-rate factor per window, long and short, of the page and the ticket (SRE workbook).
PAGE = {"1h": 14.4, "5m": 14.4, "6h": 6.0, "30m": 6.0}
TICKET = {"1d": 3.0, "2h": 3.0, "3d": 1.0, "6h": 1.0}


def test_specs_are_where_their_period_says():
    specs = {p.stem: p.parent.name for p in (REPO / "slo" / "specs").glob("*/*.yml")}
    assert specs == {name: period for name, (period, _, _) in SLOS.items()}


def _groups(name: str) -> list[dict]:
    return yaml.safe_load((RULES_DIR / f"slo-{name}.yml").read_text())["groups"]


@pytest.mark.parametrize("name", SLOS)
def test_objective_and_period(name):
    _, objective, days = SLOS[name]
    records = {r["record"]: r["expr"] for g in _groups(name) for r in g["rules"] if "record" in r}
    assert records["slo:time_period:days"] == f"vector({days})"
    value = float(re.fullmatch(r"vector\(([0-9.e-]+)\)", records["slo:objective:ratio"]).group(1))
    assert value == pytest.approx(objective)


@pytest.mark.parametrize("name", SLOS)
def test_burn_rate_windows_are_the_workbook_ones(name):
    alerts = [r for g in _groups(name) for r in g["rules"] if "alert" in r]
    by_severity = {a["labels"]["sloth_severity"]: a for a in alerts}
    assert set(by_severity) == {"page", "ticket"}
    assert by_severity["page"]["labels"]["severity"] == "critical"
    assert by_severity["ticket"]["labels"]["severity"] == "warning"
    for severity, expected in (("page", PAGE), ("ticket", TICKET)):
        found = re.findall(r"slo:sli_error:ratio_rate(\w+)\{[^}]*\} > \(([0-9.]+) \* [0-9.e-]+\)",
                           by_severity[severity]["expr"])
        factors = {window: float(factor) for window, factor in found}
        assert len(found) == 4 and factors.keys() == expected.keys(), found
        for window, factor in expected.items():
            assert factors[window] == pytest.approx(factor, rel=1e-9), (severity, window)


@pytest.mark.parametrize("name", SLOS)
def test_every_sli_window_is_recorded_once(name):
    """One rule per record and window (promtool rejects duplicates; the 1-day SLO needed the
    plugin in slo/plugins/one_rule_per_window to get there)."""
    keys = [(r["record"], r["labels"].get("sloth_window")) for g in _groups(name) for r in g["rules"] if "record" in r]
    assert len(keys) == len(set(keys))
