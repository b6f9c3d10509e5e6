"""The HA topology of the native stack (`python -m stack up --topology ha`): docs/reliability.md.

    app, simulator --OTLP--> agent (otel-collector/agent.yaml: disk queue, load balancing by trace id)
                               |-> gateway-0 .. gateway-N-1 (otel-collector/config.yaml, each with its
                               |   own collector.instance.id, disk queues) -> Jaeger, VictoriaLogs
    prometheus, prometheus-1 (same rules, external label replica) -> alertmanager, -1, -2 (gossip)

The agent takes the single collector's ports, so the services' OTLP endpoint does not change.
Prometheus' HA file, prometheus/prometheus-ha.yml, is derived from prometheus/prometheus.yml by
stack/prometheus_config.py (compose mounts it; python -m generate writes it), and rendered for
localhost like the single one.
"""

from __future__ import annotations

# Re-exported: the HA processes' ports are part of this shape.
from stack.ports import alertmanager_ports, gateway_ports, prometheus_port  # noqa: F401

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


def service_name(kind: str, i: int) -> str:
    """Native service names: prometheus, prometheus-1; alertmanager, alertmanager-1, ...;
    gateway-0, gateway-1, ... (every gateway numbered: they are peers)."""
    if kind == "gateway":
        return f"gateway-{i}"
    return kind if i == 0 else f"{kind}-{i}"
