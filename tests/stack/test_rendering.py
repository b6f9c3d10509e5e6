"""The configs the native stack renders per run (stack/prometheus_config.py,
stack/alertmanager_config.py), checked as data without the binaries (tests/stack/test_configs.py
runs promtool and amtool on them)."""

from __future__ import annotations

from pathlib import Path

import yaml

from stack import ha, prometheus_config
from stack.alertmanager_config import ALERTMANAGER_SECRETS_DIR, PAGERDUTY_URL, render_alertmanager_config
from stack.durations import parse_duration
from stack.ports import alertmanager_ports, gateway_ports, ports
from stack.services import Options, Stack

REPO_ROOT = Path(__file__).resolve().parents[2]


def targets(config: dict) -> dict[str, list[str]]:
    out = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]] for job in config["scrape_configs"]}
    out["alerting"] = [t for am in config["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    return out


def rendered_prometheus(tmp_path: Path, **options) -> dict[str, dict]:
    opts = Options(run_dir=tmp_path, cache_dir=tmp_path, **options)
    stack = Stack(opts, {})
    replicas = ha.PROMETHEUS_REPLICAS if opts.topology == "ha" else 1
    for r in range(replicas):
        stack.render_prometheus(r)
    return {ha.service_name("prometheus", r): yaml.safe_load((stack.config / ha.service_name("prometheus", r) /
                                                              "prometheus.yml").read_text()) for r in range(replicas)}


def test_the_single_shape_scrapes_every_native_port_at_the_runs_intervals(tmp_path):
    config = rendered_prometheus(tmp_path, port_offset=100, scrape_interval="2s", flush_interval="3s",
                                 rule_eval_interval="1s")["prometheus"]
    p = ports(100)
    assert targets(config) == {
        "otel-collector-exporter": [f"127.0.0.1:{p['otelcol_prometheus']}"],
        "otel-collector": [f"127.0.0.1:{p['otelcol_telemetry']}"],
        "jaeger": [f"127.0.0.1:{p['jaeger_metrics']}"],
        "victorialogs": [f"127.0.0.1:{p['victorialogs']}"],
        "alertmanager": [f"127.0.0.1:{p['alertmanager']}"],
        "prometheus": [f"127.0.0.1:{p['prometheus']}"],
        "alerting": [f"127.0.0.1:{p['alertmanager']}"],
    }
    assert config["global"]["scrape_interval"] == "2s" and config["global"]["evaluation_interval"] == "1s"
    exporter = next(j for j in config["scrape_configs"] if j["job_name"] == prometheus_config.EXPORTER_JOB)
    assert exporter["scrape_interval"] == "1500ms" and "scrape_timeout" not in exporter
    # Everything else is the repository's file.
    source = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.yml").read_text())
    assert config["storage"] == source["storage"] and config["rule_files"] == source["rule_files"]


def test_the_ha_shape_reaches_this_runs_gateways_and_every_alertmanager(tmp_path):
    configs = rendered_prometheus(tmp_path, topology="ha", gateways=4, port_offset=300)
    for config in configs.values():
        found = targets(config)
        assert found["otel-collector-exporter"] == [f"127.0.0.1:{gateway_ports(i, 300)['otelcol_prometheus']}"
                                                    for i in range(4)]
        assert found["otel-collector"][-1] == f"127.0.0.1:{ports(300)['otelcol_telemetry']}"  # the agent
        assert found["alerting"] == [f"127.0.0.1:{alertmanager_ports(i, 300)[0]}" for i in range(ha.ALERTMANAGERS)]
        assert config["global"]["external_labels"]["replica"] == "${PROMETHEUS_REPLICA}"


def test_fast_alerts_cap_every_for_in_a_copy_of_the_rules(tmp_path):
    rendered_prometheus(tmp_path, fast_alerts=True)
    copies = sorted((tmp_path / "config" / "prometheus" / "rules").glob("*.yml"))
    assert [p.name for p in copies] == sorted(p.name for p in (REPO_ROOT / "prometheus" / "rules").glob("*.yml"))
    for copy in copies:
        source = yaml.safe_load((REPO_ROOT / "prometheus" / "rules" / copy.name).read_text())
        capped = yaml.safe_load(copy.read_text())
        for group, original in zip(capped["groups"], source["groups"]):
            for rule, before in zip(group["rules"], original["rules"]):
                assert {k: v for k, v in rule.items() if k != "for"} == {k: v for k, v in before.items() if k != "for"}
                if "for" in before:
                    assert parse_duration(rule["for"]) == min(parse_duration(before["for"]), prometheus_config.FAST_ALERT_FOR)


def test_alertmanager_reads_its_secrets_from_the_run_and_notifies_the_sink(tmp_path):
    source = (REPO_ROOT / "alertmanager" / "alertmanager.yml").read_text()
    opts = Options(run_dir=tmp_path, cache_dir=tmp_path, fast_alerts=True, alert_sink="http://127.0.0.1:1",
                   alert_smtp="127.0.0.1:2")
    text = render_alertmanager_config(source, opts, tmp_path / "secrets")
    assert ALERTMANAGER_SECRETS_DIR not in text and PAGERDUTY_URL not in text
    assert f"{tmp_path}/secrets/smtp-password" in text and "http://127.0.0.1:1/pagerduty" in text
    config = yaml.safe_load(text)
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2" and config["global"]["smtp_require_tls"] is False

    def routes(route):
        yield route
        for child in route.get("routes", []):
            yield from routes(child)
    assert all(parse_duration(r.get("group_wait", "0s")) <= 1 and parse_duration(r.get("group_interval", "0s")) <= 5
               for r in routes(config["route"]))
    original = yaml.safe_load(source)
    assert config["inhibit_rules"] == original["inhibit_rules"]
