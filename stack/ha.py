"""The HA topology of the native stack (`python -m stack up --topology ha`): docs/reliability.md.

    app, simulator --OTLP--> agent (otel-collector/agent.yaml: disk queue, load balancing by trace id)
                               |-> gateway-0 .. gateway-N-1 (otel-collector/config.yaml, each with its
                               |   own collector.instance.id, disk queues) -> Jaeger, VictoriaLogs
    prometheus, prometheus-1 (same rules, external label replica) -> alertmanager, -1, -2 (gossip)

The agent takes the single collector's ports, so the services' OTLP endpoint does not change.
Prometheus' HA file, prometheus/prometheus-ha.yml, is generated from prometheus/prometheus.yml by
ha_prometheus_config() (compose mounts it; tests/stack holds it to the generator), and rendered for
localhost like the single one.
"""

from __future__ import annotations

import re

DEFAULT_GATEWAYS = 3
MAX_GATEWAYS = 5
PROMETHEUS_REPLICAS = 2
ALERTMANAGERS = 3

# Compose service names of the HA shape (compose.ha.yaml); prometheus/prometheus-ha.yml uses them.
GATEWAY_HOST = "otel-gateway-{i}"
AGENT_HOST = "otel-agent"
ALERTMANAGER_HOST = "alertmanager-{i}"
PROMETHEUS_HOST = "prometheus-{i}"
# Gateways are found by this name in compose (a network alias every gateway carries).
GATEWAY_ALIAS = "otel-gateway"

# Gossip tuning of the Alertmanager cluster (native, compose and Kubernetes use these). A full
# state sync every 5 s instead of every minute: measured here, with 20 groups notified at once
# some notification-log updates gossiped by the first peer had not reached the next one when its
# peer_timeout (15 s) ran out, and it notified again (1-2 duplicates in 20); the sync is the
# backstop for a lost gossip message.
ALERTMANAGER_CLUSTER_FLAGS = ("--cluster.pushpull-interval=5s",)

GATEWAY_PORT_BASE = 20000
GATEWAY_PORT_STEP = 20
GATEWAY_PORT_SLOTS = ("otlp_grpc", "otlp_http", "otlp_auth_grpc", "otlp_auth_http",
                      "otelcol_prometheus", "otelcol_telemetry", "otelcol_health", "otelcol_zpages")


def gateway_ports(i: int, offset: int = 0) -> dict[str, int]:
    """Gateway i's ports: a block of GATEWAY_PORT_STEP from 20000 (shifted by the port offset; 5
    gateways use 20000-20087, so offsets of 100 and 200 do not collide)."""
    base = GATEWAY_PORT_BASE + GATEWAY_PORT_STEP * i + offset
    return {slot: base + n for n, slot in enumerate(GATEWAY_PORT_SLOTS)}


def prometheus_port(replica: int, offset: int = 0) -> int:
    """Replica 0 keeps Prometheus' own port (what Grafana and the tests read); replica 1: 19090."""
    return (9090 if replica == 0 else 19089 + replica) + offset


def alertmanager_ports(i: int, offset: int = 0) -> tuple[int, int]:
    """(web, cluster) of Alertmanager i: 9093 for the first (the single stack's), then 19093,
    19094; gossip on 19095-19097."""
    web = 9093 if i == 0 else 19092 + i
    return web + offset, 19095 + i + offset


def service_name(kind: str, i: int) -> str:
    """Native service names: prometheus, prometheus-1; alertmanager, alertmanager-1, ...;
    gateway-0, gateway-1, ... (every gateway numbered: they are peers)."""
    if kind == "gateway":
        return f"gateway-{i}"
    return kind if i == 0 else f"{kind}-{i}"


# -- prometheus/prometheus-ha.yml ---------------------------------------------------------------

def _target_list(addrs: list[str]) -> str:
    return "[" + ", ".join(f'"{a}"' for a in addrs) + "]"


def ha_prometheus_config(source: str, gateways: int = DEFAULT_GATEWAYS) -> str:
    """The HA Prometheus config from the single one, by line rules (each must match once):

    - external label `replica: ${PROMETHEUS_REPLICA}` (Prometheus 3 expands variables there),
      dropped again from the alerts it sends (alert_relabel_configs), so both replicas' alerts
      are the same alert to Alertmanager;
    - alerts go to every Alertmanager (never through a load balancer: each replica must reach all);
    - the collector's exporter and telemetry targets become every gateway's, plus the agent's
      telemetry; Alertmanager's target becomes all of them; each replica scrapes both replicas,
      so a dead one is seen (MonitoringBackendDown) by the other.
    """
    gateway = [GATEWAY_HOST.format(i=i) for i in range(gateways)]
    ams = [ALERTMANAGER_HOST.format(i=i) + ":9093" for i in range(ALERTMANAGERS)]
    replacements = [
        (r'^(    stack: hitl)$', r'\1\n    replica: ${PROMETHEUS_REPLICA}'),
        (r'^(alerting:)$', '\\1\n  # The replica label is what tells the two replicas apart; without it their alerts are one.\n'
                           '  alert_relabel_configs:\n    - action: labeldrop\n      regex: replica'),
        (r'^(\s+- targets: )\["alertmanager:9093"\]$', lambda m: m.group(1) + _target_list(ams)),
        (r'^(\s+- targets: )\["otel-collector:8889"\]$',
         lambda m: m.group(1) + _target_list([f"{g}:8889" for g in gateway])),
        (r'^(\s+- targets: )\["otel-collector:8888"\]$',
         lambda m: m.group(1) + _target_list([f"{g}:8888" for g in gateway] + [f"{AGENT_HOST}:8888"])),
        (r'^(\s+- targets: )\["localhost:9090"\]$',
         lambda m: m.group(1) + _target_list([PROMETHEUS_HOST.format(i=r) + ":9090" for r in range(PROMETHEUS_REPLICAS)])),
    ]
    text = source
    for pattern, repl in replacements:
        text, count = re.subn(pattern, repl, text, flags=re.M)
        if count == 0:
            raise ValueError(f"prometheus.yml has no line matching {pattern!r}: update stack/ha.py")
    header = ("# GENERATED from prometheus/prometheus.yml by stack/ha.py (python -m stack generate); do not edit.\n"
              "# The HA shape: two replicas of this file (PROMETHEUS_REPLICA=0 and 1), "
              f"{gateways} gateways, {ALERTMANAGERS} Alertmanagers.\n")
    return header + text


def native_targets(offset: int, gateways: int) -> dict[str, str]:
    """Compose address in prometheus-ha.yml -> native address, beyond the single stack's."""
    host = "127.0.0.1"
    out = {PROMETHEUS_HOST.format(i=r) + ":9090": f"{host}:{prometheus_port(r, offset)}" for r in range(PROMETHEUS_REPLICAS)}
    for i in range(gateways):
        p = gateway_ports(i, offset)
        out[f"{GATEWAY_HOST.format(i=i)}:8889"] = f"{host}:{p['otelcol_prometheus']}"
        out[f"{GATEWAY_HOST.format(i=i)}:8888"] = f"{host}:{p['otelcol_telemetry']}"
    for i in range(ALERTMANAGERS):
        out[f"{ALERTMANAGER_HOST.format(i=i)}:9093"] = f"{host}:{alertmanager_ports(i, offset)[0]}"
    return out
