"""alertmanager/alertmanager.yml: valid (amtool check-config); every kind of alert routed to its
receiver (amtool config routes test, one case each, and every alert of the rule files); secrets
only in files; and, on a throwaway Alertmanager, grouping by alertname and service, the
inhibitions, and delivery to local stand-ins for PagerDuty, Slack and the heartbeat."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from harness.polling import wait_for
from tests.alerting.alertmanager_process import SECRET_FILES, SECRETS_DIR, Alertmanager, Receiver
from tests.alerting.rules import ALERTMANAGER_CONFIG, REPO, alerting_rules

CONFIG = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
RECEIVER_BY_SEVERITY = {"critical": "pagerduty-critical", "warning": "slack-warnings", "info": "email-info"}


def routes_test(binaries, labels: dict[str, str], expected: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binaries["amtool"], "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
         f"--verify.receivers={expected}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True)


def test_check_config(binaries):
    done = subprocess.run([binaries["amtool"], "check-config", str(ALERTMANAGER_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


CASES = [
    ("critical -> PagerDuty", {"alertname": "HighErrorRate", "severity": "critical", "service": "hitl-review"}, "pagerduty-critical"),
    ("SLO page -> PagerDuty", {"alertname": "AvailabilitySLOBurnRate", "severity": "critical", "sloth_severity": "page", "service": "hitl-review"}, "pagerduty-critical"),
    ("warning -> Slack", {"alertname": "ElevatedLatency", "severity": "warning", "service": "hitl-review"}, "slack-warnings"),
    ("SLO ticket -> Slack", {"alertname": "AvailabilitySLOBurnRate", "severity": "warning", "sloth_severity": "ticket", "service": "hitl-review"}, "slack-warnings"),
    ("info -> e-mail", {"alertname": "DeploymentStarted", "severity": "info", "service": "hitl-review"}, "email-info"),
    ("Watchdog -> heartbeat", {"alertname": "Watchdog", "severity": "none", "service": "prometheus"}, "heartbeat"),
    ("Watchdog -> heartbeat whatever its severity", {"alertname": "Watchdog", "severity": "critical"}, "heartbeat"),
    ("no severity -> Slack (catch-all)", {"alertname": "SomethingNew", "service": "hitl-review"}, "slack-warnings"),
    ("production critical -> PagerDuty", {"alertname": "HighErrorRate", "severity": "critical", "service": "hitl-review",
                                          "deployment_environment_name": "production"}, "pagerduty-critical"),
    ("staging critical -> Slack, not the pager", {"alertname": "HighErrorRate", "severity": "critical", "service": "hitl-review",
                                                  "deployment_environment_name": "staging"}, "slack-warnings"),
    ("development SLO page -> Slack", {"alertname": "AvailabilitySLOBurnRate", "severity": "critical", "sloth_severity": "page",
                                       "deployment_environment_name": "development"}, "slack-warnings"),
    ("staging Watchdog -> heartbeat", {"alertname": "Watchdog", "severity": "none", "deployment_environment_name": "staging"}, "heartbeat"),
]


@pytest.mark.parametrize("labels, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_route(binaries, labels, expected):
    done = routes_test(binaries, labels, expected)
    assert done.returncode == 0, f"{labels} went to {done.stdout.strip()!r}, want {expected}\n{done.stderr}"


def test_a_wrong_expectation_fails(binaries):
    """amtool really compares: a critical alert is not expected on Slack."""
    done = routes_test(binaries, {"alertname": "HighErrorRate", "severity": "critical"}, "slack-warnings")
    assert done.returncode != 0


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: f"{r['alert']}:{r['labels']['severity']}")
def test_every_alert_of_the_rules_reaches_its_receiver(binaries, rule):
    labels = {k: re.sub(r"\{\{.*?\}\}", "x", v) for k, v in rule["labels"].items()}
    labels["alertname"] = rule["alert"]
    expected = "heartbeat" if rule["alert"] == "Watchdog" else RECEIVER_BY_SEVERITY[labels["severity"]]
    done = routes_test(binaries, labels, expected)
    assert done.returncode == 0, f"{labels} went to {done.stdout.strip()!r}, want {expected}"


def test_grouping_is_by_alertname_service_and_environment():
    assert CONFIG["route"]["group_by"] == ["alertname", "service", "deployment_environment_name"]
    assert all("group_by" not in r for r in CONFIG["route"]["routes"]), "a sub-route regroups"


def _walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    else:
        yield path, node


def test_secrets_only_in_files():
    plain = {"routing_key", "service_key", "api_url", "auth_password", "auth_secret", "smtp_auth_password",
             "smtp_auth_secret", "slack_api_url", "app_token", "api_key", "token"}
    files = {}
    for path, value in _walk(CONFIG):
        key = path.rsplit(".", 1)[-1]
        assert key not in plain, f"{path} holds a secret in the config; use {key}_file"
        if key.endswith("_file"):
            files[path] = value
    # webhook URLs carry credentials too: only url_file.
    for receiver in CONFIG["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            assert "url" not in webhook and "url_file" in webhook
    assert files, "no *_file secrets at all?"
    for path, value in files.items():
        assert value.startswith(SECRETS_DIR) and value.removeprefix(SECRETS_DIR) in SECRET_FILES, (path, value)
    assert {v.removeprefix(SECRETS_DIR) for v in files.values()} == set(SECRET_FILES)


def test_no_secret_file_is_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert not [f for f in tracked if f.rsplit("/", 1)[-1] in SECRET_FILES]


# -- a running Alertmanager ----------------------------------------------------------------------


@pytest.fixture
def alertmanager(binaries, tmp_path):
    receiver = Receiver()
    am = Alertmanager(binaries["alertmanager"], ALERTMANAGER_CONFIG.read_text(), tmp_path, receiver)
    am.receiver = receiver
    yield am
    am.stop()
    receiver.close()


def _state(alerts: list[dict]) -> dict[tuple, str]:
    return {(a["labels"]["alertname"], a["labels"].get("service"), a["labels"].get("sloth_severity"))
            + ((env,) if (env := a["labels"].get("deployment_environment_name")) else ()):
            a["status"]["state"] for a in alerts}


def test_inhibitions(alertmanager):
    hitl = {"service": "hitl-review"}
    alertmanager.post(
        # A page silences the warning of the same service and symptom, and nothing else.
        {"alertname": "HighLatency", "severity": "critical", "symptom": "latency", **hitl},
        {"alertname": "ElevatedLatency", "severity": "warning", "symptom": "latency", **hitl},
        {"alertname": "ElevatedErrorRate", "severity": "warning", "symptom": "error-rate", **hitl},
        {"alertname": "ElevatedLatency", "severity": "warning", "symptom": "latency", "service": "other"},
        # An SLO page silences that SLO's ticket; another SLO's ticket stays.
        {"alertname": "AvailabilitySLOBurnRate", "severity": "critical", "sloth_severity": "page",
         "sloth_id": "hitl-review-availability", "symptom": "availability", **hitl},
        {"alertname": "AvailabilitySLOBurnRate", "severity": "warning", "sloth_severity": "ticket",
         "sloth_id": "hitl-review-availability", "symptom": "availability", **hitl},
        {"alertname": "ErrorRateSLOBurnRate", "severity": "warning", "sloth_severity": "ticket",
         "sloth_id": "hitl-review-error-rate", "symptom": "error-rate", **hitl},
        # The early budget warning is silenced by the same SLO's ticket.
        {"alertname": "ErrorBudgetBurning", "severity": "warning", "sloth_id": "hitl-review-error-rate",
         "symptom": "error-rate", **hitl},
        # Without a symptom a critical alert silences nothing.
        {"alertname": "NoSymptomCritical", "severity": "critical", **hitl},
        {"alertname": "NoSymptomWarning", "severity": "warning", **hitl},
        {"alertname": "Watchdog", "severity": "none", "symptom": "heartbeat", "service": "prometheus"},
        # Environments do not silence each other: production's page leaves staging's warning.
        {"alertname": "HighErrorRate", "severity": "critical", "symptom": "error-rate", "deployment_environment_name": "production", **hitl},
        {"alertname": "ElevatedErrorRate", "severity": "warning", "symptom": "error-rate", "deployment_environment_name": "staging", **hitl},
        {"alertname": "ElevatedErrorRate", "severity": "warning", "symptom": "error-rate", "deployment_environment_name": "production", **hitl},
    )
    expected = {
        ("HighErrorRate", "hitl-review", None, "production"): "active",
        ("ElevatedErrorRate", "hitl-review", None, "staging"): "active",
        ("ElevatedErrorRate", "hitl-review", None, "production"): "suppressed",
        ("HighLatency", "hitl-review", None): "active",
        ("ElevatedLatency", "hitl-review", None): "suppressed",
        ("ElevatedErrorRate", "hitl-review", None): "active",
        ("ElevatedLatency", "other", None): "active",
        ("AvailabilitySLOBurnRate", "hitl-review", "page"): "active",
        ("AvailabilitySLOBurnRate", "hitl-review", "ticket"): "suppressed",
        ("ErrorRateSLOBurnRate", "hitl-review", "ticket"): "active",
        ("ErrorBudgetBurning", "hitl-review", None): "suppressed",
        ("NoSymptomCritical", "hitl-review", None): "active",
        ("NoSymptomWarning", "hitl-review", None): "active",
        ("Watchdog", "prometheus", None): "active",
    }
    got = wait_for("the inhibitions to settle", lambda: (s := _state(alertmanager.alerts())) == expected and s,
                   timeout=10)
    assert got == expected


def test_grouping(alertmanager):
    alertmanager.post(
        {"alertname": "HighErrorRate", "severity": "critical", "service": "hitl-review", "symptom": "error-rate", "instance": "a"},
        {"alertname": "HighErrorRate", "severity": "critical", "service": "hitl-review", "symptom": "error-rate", "instance": "b"},
        {"alertname": "HighErrorRate", "severity": "critical", "service": "other", "symptom": "error-rate"},
        {"alertname": "HighLatency", "severity": "critical", "service": "hitl-review", "symptom": "latency"},
    )

    def groups():
        return sorted((tuple(sorted(g["labels"].items())), g["receiver"]["name"], len(g["alerts"]))
                      for g in alertmanager.groups())

    expected = sorted([
        ((("alertname", "HighErrorRate"), ("service", "hitl-review")), "pagerduty-critical", 2),
        ((("alertname", "HighErrorRate"), ("service", "other")), "pagerduty-critical", 1),
        ((("alertname", "HighLatency"), ("service", "hitl-review")), "pagerduty-critical", 1),
    ])
    assert wait_for("the groups", lambda: groups() == expected and groups(), timeout=10) == expected


def test_delivery_reads_the_secret_files_and_renders(alertmanager):
    """One alert per route that has an HTTP receiver: the heartbeat (group_wait 0s), a page
    (10s) and a Slack warning (30s) arrive at the local receiver, sent with the secrets read
    from the files and with the templates rendered (a template error only shows when sending)."""
    alertmanager.post(
        {"alertname": "Watchdog", "severity": "none", "symptom": "heartbeat", "service": "prometheus"},
        {"alertname": "ServiceDown", "severity": "critical", "symptom": "availability", "service": "hitl-review"},
        {"alertname": "ElevatedLatency", "severity": "warning", "symptom": "latency", "service": "hitl-review"},
    )
    received = alertmanager.receiver.received
    wait_for("a notification on each of /heartbeat, /pagerduty and /slack",
             lambda: {"/heartbeat", "/pagerduty", "/slack"} <= received.keys(), timeout=60, interval=1)

    heartbeat = received["/heartbeat"][0]
    assert [a["labels"]["alertname"] for a in heartbeat["alerts"]] == ["Watchdog"]

    page = received["/pagerduty"][0]
    assert page["routing_key"] == "test-routing-key"  # read from pagerduty-routing-key
    assert page["event_action"] == "trigger"
    assert "ServiceDown" in page["payload"]["summary"]
    assert {link["href"] for link in page["links"]} == {"https://runbooks.test/ServiceDown.md",
                                                        "http://grafana.test/d/hitl-overview"}

    slack = received["/slack"][0]
    attachment = slack["attachments"][0]
    assert attachment["title"] == "[FIRING:1] ElevatedLatency (hitl-review)"
    assert "<https://runbooks.test/ElevatedLatency.md|Runbook>" in attachment["text"]
    assert slack["channel"] == "#hitl-alerts"
    assert not [n for n in received.get("/pagerduty", []) if "ElevatedLatency" in n["payload"]["summary"]]
