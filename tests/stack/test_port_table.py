"""stack/ports.py is the one table of ports: compose, which cannot import it, must state the same
container ports, and the native stack must keep its documented shape."""

from __future__ import annotations

from pathlib import Path

import yaml

from stack.ports import IN_CONTAINER, PORTS

REPO_ROOT = Path(__file__).resolve().parents[2]

# compose service -> the IN_CONTAINER entries it listens on.
COMPOSE_SERVICES = {
    "postgres": ["postgres"],
    "redis": ["redis"],
    "app": ["app"],
    "otel-collector": ["otlp_grpc", "otlp_http", "otlp_auth_grpc", "otlp_auth_http", "otelcol_telemetry",
                       "otelcol_prometheus", "otelcol_health", "otelcol_zpages"],
    "jaeger": ["jaeger_otlp_grpc", "jaeger_otlp_http", "jaeger_query_http", "jaeger_query_grpc", "jaeger_health",
               "jaeger_metrics"],
    "victorialogs": ["victorialogs"],
    "prometheus": ["prometheus"],
    "alertmanager": ["alertmanager"],
    "grafana": ["grafana"],
}


def test_compose_exposes_exactly_the_tables_container_ports():
    services = yaml.safe_load((REPO_ROOT / "compose.stack.yaml").read_text())["services"]
    for name, entries in COMPOSE_SERVICES.items():
        exposed = sorted(int(p) for p in services[name]["expose"])
        assert exposed == sorted(IN_CONTAINER[e] for e in entries), name
        for published in services[name].get("ports", []):
            assert int(str(published).rsplit(":", 1)[1]) in exposed, (name, published)


def test_the_native_collector_keeps_its_container_ports_and_jaeger_moves_off_the_shared_ones():
    collector = {k: v for k, v in PORTS.items() if not k.startswith(("jaeger_", "victorialogs", "prometheus", "alertmanager"))}
    assert collector == {k: IN_CONTAINER[k] for k in collector}
    native = list(PORTS.values())
    assert len(native) == len(set(native)), "two native services on one port"
