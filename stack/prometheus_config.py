"""Every shape's Prometheus config, derived from prometheus/prometheus.yml as data: the file is
loaded, its structure changed, and dumped (stack/yaml_dump.py). prometheus/prometheus.yml is the
compose shape; its comments explain each setting and stay there (a derived file has none).

    ha_shape()          the HA shape (compose.ha.yaml, and the base of Kubernetes'): stack/ha.py's counts
    kubernetes_shape()  the HA shape with StatefulSet pod addresses and DNS discovery
    native_shape()      any shape for one host: compose addresses -> 127.0.0.1 ports, the run's intervals

Targets are literal "host:port" strings in static_configs; each derivation maps every target it
knows and refuses a source whose targets it does not find, so a target added to prometheus.yml
without a mapping fails loudly rather than scraping nothing.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import yaml

from stack import ha, process, yaml_dump
from stack.durations import cap, format_ms, parse_duration
from stack.generated import yaml_header
from stack.ports import HOST, IN_CONTAINER, alertmanager_ports, gateway_ports, ports, prometheus_port

if TYPE_CHECKING:
    from stack.services import Options

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT / "prometheus" / "prometheus.yml"
RULES = REPO_ROOT / "prometheus" / "rules"
EXPORTER_JOB = "otel-collector-exporter"
# Tests only (Options.fast_alerts): every alert's `for` capped, so an alert fires in seconds. The
# thresholds and windows themselves are proven by promtool's unit tests with the real values.
FAST_ALERT_FOR = 5.0

C = IN_CONTAINER
COLLECTOR_EXPORTER = f"otel-collector:{C['otelcol_prometheus']}"
COLLECTOR_TELEMETRY = f"otel-collector:{C['otelcol_telemetry']}"
ALERTMANAGER = f"alertmanager:{C['alertmanager']}"
PROMETHEUS_ITSELF = f"localhost:{C['prometheus']}"


def load(text: str | None = None) -> dict:
    return yaml.safe_load(SOURCE.read_text() if text is None else text)


def static_configs(config: dict) -> Iterator[dict]:
    """Every static_configs entry: of the Alertmanagers, then of each scrape job."""
    for holder in [*config.get("alerting", {}).get("alertmanagers", []), *config.get("scrape_configs", [])]:
        yield from holder.get("static_configs", [])


def map_targets(config: dict, mapping: dict[str, list[str]], *, required: bool, where: str) -> None:
    """Each target in mapping becomes its list of targets (in place). required: every key of the
    mapping must be found."""
    found = set()
    for entry in static_configs(config):
        targets = []
        for target in entry["targets"]:
            targets += mapping.get(target, [target])
            if target in mapping:
                found.add(target)
        entry["targets"] = targets
    missing = sorted(set(mapping) - found) if required else []
    if missing:
        raise ValueError(f"prometheus.yml has no target {missing}: update {where}")


def _with_key_replaced(holder: dict, old: str, new: str, value) -> dict:
    """holder with key old replaced by new at the same place (the dump keeps the order)."""
    return {(new if k == old else k): (value if k == old else v) for k, v in holder.items()}


# -- the HA shape ------------------------------------------------------------------------------

def ha_shape(config: dict, gateways: int = ha.DEFAULT_GATEWAYS) -> dict:
    """- external label `replica: ${PROMETHEUS_REPLICA}` (Prometheus 3 expands variables there),
      dropped again from the alerts it sends (alert_relabel_configs), so both replicas' alerts
      are the same alert to Alertmanager;
    - alerts go to every Alertmanager (never through a load balancer: each replica must reach all);
    - the collector's exporter and telemetry targets become every gateway's, plus the agent's
      telemetry; Alertmanager's target becomes all of them; each replica scrapes both replicas,
      so a dead one is seen (MonitoringBackendDown) by the other."""
    config = copy.deepcopy(config)
    config["global"]["external_labels"]["replica"] = "${PROMETHEUS_REPLICA}"
    config["alerting"] = {"alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
                          **config["alerting"]}
    gateway_hosts = [ha.GATEWAY_HOST.format(i=i) for i in range(gateways)]
    map_targets(config, {
        ALERTMANAGER: [f"{ha.ALERTMANAGER_HOST.format(i=i)}:{C['alertmanager']}" for i in range(ha.ALERTMANAGERS)],
        COLLECTOR_EXPORTER: [f"{g}:{C['otelcol_prometheus']}" for g in gateway_hosts],
        COLLECTOR_TELEMETRY: [f"{g}:{C['otelcol_telemetry']}" for g in [*gateway_hosts, ha.AGENT_HOST]],
        PROMETHEUS_ITSELF: [f"{ha.PROMETHEUS_HOST.format(i=r)}:{C['prometheus']}" for r in range(ha.PROMETHEUS_REPLICAS)],
    }, required=True, where="stack/prometheus_config.py ha()")
    return config


def ha_file(gateways: int = ha.DEFAULT_GATEWAYS) -> str:
    """prometheus/prometheus-ha.yml (compose.ha.yaml mounts it)."""
    return (yaml_header("prometheus/prometheus.yml by stack/prometheus_config.py")
            + f"# The HA shape: two replicas of this file (PROMETHEUS_REPLICA=0 and 1), {gateways} gateways, "
              f"{ha.ALERTMANAGERS} Alertmanagers.\n# What each setting is for: the comments of prometheus/prometheus.yml.\n"
            + yaml_dump.dump(ha_shape(load(), gateways)))


# -- Kubernetes --------------------------------------------------------------------------------

def kubernetes_shape(config: dict) -> dict:
    """The HA shape with its compose addresses replaced:

    - Prometheus replicas and Alertmanagers by their StatefulSet pod addresses (fixed counts,
      stable names, so the instance label is the pod);
    - the gateways and the agents, whose numbers change (a scaled StatefulSet, one agent per
      node), by DNS discovery of their headless Services: no RBAC needed, and a new gateway is
      scraped within a refresh. The instance label is then the pod IP; the gateway's name is
      in collector.instance.id.

    And the size cap of retention follows the PVC (stack/kubernetes.py), not the laptop's 2 GB.
    """
    from stack.kubernetes import peer, store_size_cap_gib

    config = ha_shape(config)
    # Prometheus' size units are base 2 (GB = GiB).
    config["storage"]["tsdb"]["retention"]["size"] = f"{store_size_cap_gib('prometheus')}GB"
    gateway_hosts = [ha.GATEWAY_HOST.format(i=i) for i in range(ha.DEFAULT_GATEWAYS)]
    discovered = {
        tuple(f"{g}:{C['otelcol_prometheus']}" for g in gateway_hosts): ([ha.GATEWAY_ALIAS], C["otelcol_prometheus"]),
        tuple(f"{g}:{C['otelcol_telemetry']}" for g in [*gateway_hosts, ha.AGENT_HOST]):
            ([ha.GATEWAY_ALIAS, ha.AGENT_HOST], C["otelcol_telemetry"]),
    }
    jobs, found = [], set()
    for job in config["scrape_configs"]:
        targets = tuple(t for entry in job.get("static_configs", []) for t in entry["targets"])
        if targets in discovered:
            names, port = discovered[targets]
            found.add(targets)
            job = _with_key_replaced(job, "static_configs", "dns_sd_configs",
                                     [{"names": names, "type": "A", "port": port, "refresh_interval": "15s"}])
        jobs.append(job)
    if found != set(discovered):
        raise ValueError(f"the HA config has no job scraping exactly {sorted(set(discovered) - found)}: "
                         "update stack/prometheus_config.py kubernetes_shape()")
    config["scrape_configs"] = jobs
    map_targets(config, {
        **{f"{ha.ALERTMANAGER_HOST.format(i=i)}:{C['alertmanager']}": [peer("alertmanager", i, C["alertmanager"])]
           for i in range(ha.ALERTMANAGERS)},
        **{f"{ha.PROMETHEUS_HOST.format(i=r)}:{C['prometheus']}": [peer("prometheus", r, C["prometheus"])]
           for r in range(ha.PROMETHEUS_REPLICAS)},
    }, required=True, where="stack/prometheus_config.py kubernetes_shape()")
    return config


def kubernetes_file() -> str:
    """prometheus.yml of the Kubernetes ConfigMap."""
    return (yaml_header("prometheus/prometheus.yml by stack/prometheus_config.py")
            + "# Kubernetes: PROMETHEUS_REPLICA is the pod's name (prometheus-0, prometheus-1).\n"
            + yaml_dump.dump(kubernetes_shape(load())))


# -- one host ----------------------------------------------------------------------------------

def native_targets(offset: int = 0, gateways: int = 0) -> dict[str, str]:
    """Compose address -> native address: the single shape's, and with gateways the HA shape's."""
    p = ports(offset)
    out = {
        COLLECTOR_EXPORTER: f"{HOST}:{p['otelcol_prometheus']}",
        COLLECTOR_TELEMETRY: f"{HOST}:{p['otelcol_telemetry']}",
        f"jaeger:{C['jaeger_metrics']}": f"{HOST}:{p['jaeger_metrics']}",
        f"victorialogs:{C['victorialogs']}": f"{HOST}:{p['victorialogs']}",
        ALERTMANAGER: f"{HOST}:{p['alertmanager']}",
        PROMETHEUS_ITSELF: f"{HOST}:{p['prometheus']}",
    }
    if not gateways:
        return out
    out[f"{ha.AGENT_HOST}:{C['otelcol_telemetry']}"] = f"{HOST}:{p['otelcol_telemetry']}"
    out |= {f"{ha.PROMETHEUS_HOST.format(i=r)}:{C['prometheus']}": f"{HOST}:{prometheus_port(r, offset)}"
            for r in range(ha.PROMETHEUS_REPLICAS)}
    for i in range(gateways):
        g = gateway_ports(i, offset)
        for slot in ("otelcol_prometheus", "otelcol_telemetry"):
            out[f"{ha.GATEWAY_HOST.format(i=i)}:{C[slot]}"] = f"{HOST}:{g[slot]}"
    for i in range(ha.ALERTMANAGERS):
        out[f"{ha.ALERTMANAGER_HOST.format(i=i)}:{C['alertmanager']}"] = f"{HOST}:{alertmanager_ports(i, offset)[0]}"
    return out


def native_shape(config: dict, opts: Options, *, targets: dict[str, str] | None) -> dict:
    """The run's intervals (the exporter job at most half the span-metrics flush interval, since
    each exemplar is exposed for one flush interval only) and, with targets, every compose address
    mapped; a compose host left over is an error. targets=None keeps the compose addresses (the
    compose tests' copy: intervals only)."""
    config = copy.deepcopy(config)
    config["global"]["scrape_interval"] = opts.scrape_interval
    if opts.rule_eval_interval:
        config["global"]["evaluation_interval"] = opts.rule_eval_interval
    exporter_interval = format_ms(min(parse_duration(opts.scrape_interval), parse_duration(opts.flush_interval) / 2))
    for job in config["scrape_configs"]:
        if job["job_name"] == EXPORTER_JOB:
            job.pop("scrape_timeout", None)
            job["scrape_interval"] = exporter_interval
    if targets is not None:
        map_targets(config, {compose: [native] for compose, native in targets.items()}, required=False, where="")
        leftover = sorted({t for entry in static_configs(config) for t in entry["targets"] if re.match(r"[A-Za-z]", t)})
        if leftover:
            raise ValueError(f"prometheus.yml has targets the native stack does not map: {leftover}")
    return config


def render_dir(target_dir: Path, opts: Options, config: dict, *, targets: dict[str, str] | None) -> None:
    """prometheus.yml (native_shape() of config) and the rules/ it loads, into target_dir.

    rule_files are relative to the config file: rules/ is the repository's rules, or with
    fast_alerts a copy whose `for` durations are capped."""
    target_dir.mkdir(parents=True, exist_ok=True)
    process.write_file(target_dir / "prometheus.yml",
                       "# Rendered by python -m stack from prometheus/prometheus.yml for this run.\n"
                       + yaml_dump.dump(native_shape(config, opts, targets=targets)))
    rules = target_dir / "rules"
    if rules.is_symlink() or rules.is_file():
        rules.unlink()
    elif rules.exists():
        shutil.rmtree(rules)
    if targets is not None and not opts.fast_alerts:
        rules.symlink_to(RULES, target_is_directory=True)
        return
    # A copy (a symlink would not resolve inside a container the folder is mounted into).
    rules.mkdir()
    for source_file in sorted(RULES.glob("*.yml")):
        if not opts.fast_alerts:
            shutil.copyfile(source_file, rules / source_file.name)
            continue
        groups = yaml.safe_load(source_file.read_text())
        for group in groups["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = cap(rule["for"], FAST_ALERT_FOR)
        (rules / source_file.name).write_text(yaml_dump.dump(groups))

