"""What every alert carries (prometheus/rules/alerts.yml header): severity, service and symptom
labels; a summary, a description with the current value, a runbook_url from one pattern and a
dashboard link. Every runbook_url names a runbook that exists, every runbook belongs to an
alert, and every alert has promtool tests that show it firing and staying quiet."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.alerting.rules import RUNBOOKS_DIR, alert_names, alerting_rules, rule_test_files

# The one pattern of runbook links: RUNBOOK_BASE + <alertname>.md = docs/runbooks/<alertname>.md
# in the repository. Change the base here and in the rule files (sed) together.
RUNBOOK_BASE = "https://git.example.com/hitl/hitl-review/blob/main/docs/runbooks/"
GRAFANA_BASE = "http://localhost:3000"
DASHBOARD_UIDS = {"hitl-overview", "hitl-performance", "hitl-business", "hitl-slo"}
SEVERITIES = {"critical", "warning", "info", "none"}  # none: the Watchdog only
RUNBOOK_SECTIONS = ("## What it means for users", "## First checks", "## Likely causes",
                    "## Mitigation", "## Escalation")

# The required alerts: severity and `for` (ServiceDown: the availability rule,
# then the no-telemetry rule, whose expression already spans a minute).
REQUIRED = {
    "HighErrorRate": ("critical", "5m"), "HighLatency": ("critical", "5m"),
    "ServiceDown": ("critical", ["1m", "30s"]), "DatabaseDown": ("critical", "1m"),
    "ElevatedErrorRate": ("warning", "10m"), "ElevatedLatency": ("warning", "10m"),
    "HighMemoryUsage": ("warning", "15m"), "HighCPUUsage": ("warning", "15m"),
    "ErrorBudgetBurning": ("warning", "1h"),
    "DeploymentStarted": ("info", None), "DeploymentCompleted": ("info", "1m"),
    "RollbackTriggered": ("info", None), "Watchdog": ("none", None),
}

RULES = alerting_rules()


def rule_id(rule: dict) -> str:
    return f"{rule['alert']}[{rule['file']}:{rule['labels'].get('severity')}]"


def test_the_required_alerts_exist_with_their_severity_and_for():
    by_name: dict[str, list[dict]] = {}
    for rule in RULES:
        by_name.setdefault(rule["alert"], []).append(rule)
    for name, (severity, for_) in REQUIRED.items():
        assert name in by_name, f"alert {name} is missing"
        assert [rule["labels"]["severity"] for rule in by_name[name]] == [severity] * len(by_name[name]), name
        fors = [rule.get("for") for rule in by_name[name]]
        assert fors == (for_ if isinstance(for_, list) else [for_] * len(fors)), f"{name}: for {fors}, want {for_}"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_labels(rule):
    labels = rule.get("labels", {})
    assert labels.get("severity") in SEVERITIES
    assert labels.get("service"), "no service label"
    assert labels.get("symptom"), "no symptom label (inhibition key, alertmanager/alertmanager.yml)"


@pytest.mark.parametrize("rule", RULES, ids=rule_id)
def test_annotations(rule):
    annotations = rule.get("annotations", {})
    assert annotations.get("summary")
    assert "$value" in annotations.get("description", ""), "the description must show the current value"
    assert annotations.get("runbook_url") == f"{RUNBOOK_BASE}{rule['alert']}.md"
    match = re.fullmatch(re.escape(GRAFANA_BASE) + r"/d/([a-z0-9-]+)(\?.*)?", annotations.get("dashboard_url", ""))
    assert match and match.group(1) in DASHBOARD_UIDS, annotations.get("dashboard_url")


@pytest.mark.parametrize("name", alert_names())
def test_every_runbook_url_names_an_existing_runbook(name):
    urls = {r["annotations"]["runbook_url"] for r in RULES if r["alert"] == name}
    for url in urls:
        path = RUNBOOKS_DIR / url.removeprefix(RUNBOOK_BASE)
        assert path.is_file(), f"{name}: runbook_url {url} -> {path} does not exist"


def test_every_runbook_belongs_to_an_alert():
    runbooks = {p.stem for p in RUNBOOKS_DIR.glob("*.md") if p.name != "README.md"}
    assert runbooks - set(alert_names()) == set(), "runbooks without an alert"


@pytest.mark.parametrize("name", alert_names())
def test_runbook_has_the_sections(name):
    text = (RUNBOOKS_DIR / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n"), "the title is the alert name"
    for section in RUNBOOK_SECTIONS:
        assert section in text, f"{name}.md has no '{section}'"
    assert "```promql" in text, "the first checks give PromQL to paste"


def test_runbook_promql_parses(binaries, tmp_path):
    """Every line of every ```promql block is a query someone pastes at 3 a.m.: promtool parses
    them all, as recording rules of a scratch file (no server needed)."""
    queries = []
    for path in sorted(RUNBOOKS_DIR.glob("*.md")):
        for block in re.findall(r"```promql\n(.*?)```", path.read_text(), re.S):
            queries += [(path.name, line.strip()) for line in block.splitlines() if line.strip()]
    assert queries
    scratch = tmp_path / "runbook-queries.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "runbooks", "rules": [
        {"record": f"runbook:query_{i}:check", "expr": expr} for i, (_, expr) in enumerate(queries)]}]}))
    done = subprocess.run([binaries["promtool"], "check", "rules", "--lint=none", str(scratch)],
                          capture_output=True, text=True)
    where = "\n".join(f"query_{i}: {name}: {expr}" for i, (name, expr) in enumerate(queries))
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n{where}"


def _alert_rule_tests() -> dict[str, list[bool]]:
    """alertname -> [expects firing alerts?] over every alert_rule_test in prometheus/tests."""
    seen: dict[str, list[bool]] = {}
    for path in rule_test_files():
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                seen.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    return seen


@pytest.mark.parametrize("name", alert_names())
def test_every_alert_has_promtool_tests_firing_and_quiet(name):
    cases = _alert_rule_tests().get(name, [])
    assert True in cases, f"no promtool test shows {name} firing"
    if name != "Watchdog":
        assert False in cases, f"no promtool test shows {name} quiet"
