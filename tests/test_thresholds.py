"""thresholds.yaml is the one source of every threshold: the alert rules, the SLO specs, the
process limits of the recording rules and the app container's limits must say exactly what it
says (the dashboards read it directly). Each failure names the file and the value that differs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dashboards import objectives

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "thresholds.yaml").read_text())
ALERTS_FILE = REPO / "prometheus" / "rules" / "alerts.yml"
COMPARISON_AT_END = re.compile(r"(>|<|==|!=|>=|<=)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*\)?\s*$")


def _rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _alert(name: str, match: dict | None) -> dict:
    found = [r for r in _rules(ALERTS_FILE) if r.get("alert") == name
             and all(r["labels"].get(k) == v for k, v in (match or {}).items())]
    assert len(found) == 1, f"{ALERTS_FILE.name}: {len(found)} rules named {name} matching {match}"
    return found[0]


def _seconds(duration: str) -> float:
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def said(value: float, unit: str) -> str:
    """How a description writes a threshold: 1%, 0.5%, 500 ms, 1 s, 2x."""
    if unit == "ratio":
        return f"{value * 100:g}%"
    if unit == "seconds":
        return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
    return f"{value:g}x"


def said_for(duration: str) -> str:
    """How a description writes a `for`: 5 minutes, 1 minute, an hour."""
    count, unit = int(duration[:-1]), {"m": "minute", "h": "hour"}[duration[-1]]
    if count == 1:
        return f"an {unit}" if unit == "hour" else f"1 {unit}"
    return f"{count} {unit}s"


@pytest.mark.parametrize("name", sorted(CONFIG["alerts"]))
def test_alert_rules_say_what_the_config_says(name):
    cfg = CONFIG["alerts"][name]
    rule = _alert(name, cfg.get("match"))
    where = f"{ALERTS_FILE.relative_to(REPO)}: {name}"
    assert rule.get("for") == cfg["for"], f"{where} has for: {rule.get('for')}, thresholds.yaml {cfg['for']}"
    found = COMPARISON_AT_END.search(rule["expr"].strip())
    assert found, f"{where}: no comparison at the end of the expression"
    assert float(found.group(2)) == cfg["threshold"], (
        f"{where} compares with {found.group(2)}, thresholds.yaml says {cfg['threshold']}")
    description = rule["annotations"]["description"]
    if "unit" in cfg:
        assert said(cfg["threshold"], cfg["unit"]) in description, (
            f"{where}: the description does not say {said(cfg['threshold'], cfg['unit'])!r}: {description}")
    assert said_for(cfg["for"]) in description, (
        f"{where}: the description does not say {said_for(cfg['for'])!r}: {description}")


def test_every_threshold_of_the_plan_is_in_the_config():
    plan = {"HighErrorRate", "HighLatency", "ServiceDown", "DatabaseDown", "ElevatedErrorRate", "ElevatedLatency",
            "HighMemoryUsage", "HighCPUUsage", "ErrorBudgetBurning"}
    assert plan <= set(CONFIG["alerts"])


@pytest.mark.parametrize("name", sorted(CONFIG["slos"]))
def test_slo_specs_say_what_the_config_says(name):
    cfg = CONFIG["slos"][name]
    specs = [p for p in (REPO / "slo" / "specs").glob("*/*.yml")
             if any(s["name"] == name for s in yaml.safe_load(p.read_text())["slos"])]
    assert len(specs) == 1, f"one spec in slo/specs/ defines the {name} SLO, found {specs}"
    spec_path = specs[0]
    slo = next(s for s in yaml.safe_load(spec_path.read_text())["slos"] if s["name"] == name)
    where = spec_path.relative_to(REPO)
    assert spec_path.parent.name == cfg["window"], f"{where}: period {spec_path.parent.name}, thresholds.yaml {cfg['window']}"
    assert slo["objective"] == pytest.approx(cfg["objective"] * 100), (
        f"{where}: objective {slo['objective']}, thresholds.yaml {cfg['objective'] * 100:g}")
    if "threshold_seconds" in cfg:
        buckets = set(re.findall(r'le="([0-9.]+)"', yaml.safe_dump(slo["sli"])))
        assert buckets == {f"{cfg['threshold_seconds']:g}"}, f"{where}: le={buckets}, thresholds.yaml {cfg['threshold_seconds']}"


@pytest.mark.parametrize("name", sorted(CONFIG["slos"]))
def test_the_generated_slo_rules_carry_the_objective(name):
    path = REPO / "prometheus" / "rules" / f"slo-{name}.yml"
    objective = next(r for r in _rules(path) if r.get("record") == "slo:objective:ratio")
    value = float(re.fullmatch(r"vector\(([0-9.e-]+)\)", objective["expr"].strip()).group(1))
    assert value == pytest.approx(CONFIG["slos"][name]["objective"]), (
        f"{path.relative_to(REPO)} is stale: python -m generate")


@pytest.mark.parametrize("service", sorted(CONFIG["resources"]))
def test_process_limits_of_the_recording_rules(service):
    limits = CONFIG["resources"][service]
    rules = {(r["record"], r.get("labels", {}).get("service_name")): r
             for r in _rules(REPO / "prometheus" / "rules" / "recording.yml") if "record" in r}
    for record, key in (("service:process_cpu_limit_cores", "cpu_cores"),
                        ("service:process_memory_limit_bytes", "memory_bytes")):
        assert (record, service) in rules, f"recording.yml has no {record} for {service}"
        rule = rules[(record, service)]
        value = float(re.fullmatch(r"vector\(([0-9.e]+)\)", rule["expr"].split("#")[0].strip()).group(1))
        assert value == limits[key], f"recording.yml {record} = {value:g}, thresholds.yaml {key} = {limits[key]}"


def test_the_app_container_gets_the_limits():
    app = yaml.safe_load((REPO / "compose.stack.yaml").read_text())["services"]["app"]
    limits = CONFIG["resources"]["hitl-review"]
    assert float(app["cpus"]) == limits["cpu_cores"], f"compose.stack.yaml app cpus: {app['cpus']}"
    memory = app["mem_limit"]
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    as_bytes = int(memory[:-1]) * units[memory[-1].lower()] if memory[-1].isalpha() else int(memory)
    assert as_bytes == limits["memory_bytes"], f"compose.stack.yaml app mem_limit: {memory}"


def test_the_collector_containers_get_the_limits():
    """compose's collectors (memory; compose gives no CPU limit) and the Kubernetes ones."""
    from stack import kubernetes

    limits = CONFIG["resources"]["otel-collector"]
    collector = yaml.safe_load((REPO / "compose.stack.yaml").read_text())["services"]["otel-collector"]
    assert collector["mem_limit"] == f"{limits['memory_bytes'] // 2**20}m", f"compose.stack.yaml: {collector['mem_limit']}"
    objs = [o for o in kubernetes.collector_objects(kubernetes.config_maps()) if o["kind"] in ("StatefulSet", "DaemonSet")]
    assert len(objs) == 2
    for obj in objs:
        res = obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        # ephemeral-storage is the disk queue's and the logs' (stack/kubernetes.py), not a threshold.
        assert {k: res[k] for k in ("cpu", "memory")} == {"cpu": f"{limits['cpu_cores']:g}",
                                                          "memory": f"{limits['memory_bytes'] // 2**20}Mi"}, obj["metadata"]["name"]


def test_the_dashboards_read_the_config():
    assert objectives.ERROR_RATIO_CRITICAL == CONFIG["alerts"]["HighErrorRate"]["threshold"]
    assert objectives.P95_LATENCY_WARNING_SECONDS == CONFIG["alerts"]["ElevatedLatency"]["threshold"]
    assert {s.name: (s.objective, s.window) for s in objectives.SLOS} == {
        name: (cfg["objective"], cfg["window"]) for name, cfg in CONFIG["slos"].items()}


def test_a_changed_threshold_is_caught(monkeypatch):
    """The check compares: a config that disagrees with the rules fails it."""
    monkeypatch.setitem(CONFIG["alerts"], "HighErrorRate", {**CONFIG["alerts"]["HighErrorRate"], "threshold": 0.02})
    with pytest.raises(AssertionError, match="compares with 0.01, thresholds.yaml says 0.02"):
        test_alert_rules_say_what_the_config_says("HighErrorRate")
