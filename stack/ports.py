"""Every port of the system, in the one table each shape reads: the native stack (services.py,
ha.py), Kubernetes (kubernetes.py), the generated Prometheus configs, and the tests' port
reservation (tests/support/ports.py). Compose's YAML cannot import it and states its container
ports itself; they are these IN_CONTAINER numbers.

IN_CONTAINER: where each component listens in its own container (compose, Kubernetes). These are
the upstream defaults, which the repository's configs keep, so an address such as jaeger:4318 or
victorialogs:9428 is the same in compose and in a cluster namespace.

PORTS: where each listens natively, all on one host. The collector keeps its defaults; Jaeger
shares four of them (OTLP, health, metrics), so Jaeger's move. PostgreSQL, Redis and the app keep
theirs (PG_PORT, REDIS_PORT, APP_PORT: the defaults of the options with those names).
"""

from __future__ import annotations

HOST = "127.0.0.1"

IN_CONTAINER = {
    "app": 8000,
    "otlp_grpc": 4317,
    "otlp_http": 4318,
    "otlp_auth_grpc": 4319,
    "otlp_auth_http": 4320,
    "otelcol_telemetry": 8888,
    "otelcol_prometheus": 8889,
    "otelcol_health": 13133,
    "otelcol_zpages": 55679,
    "jaeger_otlp_grpc": 4317,
    "jaeger_otlp_http": 4318,
    "jaeger_query_http": 16686,
    "jaeger_query_grpc": 16685,
    "jaeger_health": 13133,
    "jaeger_metrics": 8888,
    "victorialogs": 9428,
    "prometheus": 9090,
    "alertmanager": 9093,
    "alertmanager_cluster": 9094,
    "grafana": 3000,
    "postgres": 5432,
    "redis": 6379,
}

COLLECTOR_SLOTS = ("otlp_grpc", "otlp_http", "otlp_auth_grpc", "otlp_auth_http", "otelcol_prometheus",
              "otelcol_telemetry", "otelcol_health", "otelcol_zpages")
PORTS = {
    **{name: IN_CONTAINER[name] for name in COLLECTOR_SLOTS},
    "jaeger_otlp_grpc": 14317,
    "jaeger_otlp_http": 14318,
    "jaeger_query_http": IN_CONTAINER["jaeger_query_http"],
    "jaeger_query_grpc": IN_CONTAINER["jaeger_query_grpc"],
    "jaeger_health": 14133,
    "jaeger_metrics": 14269,
    "victorialogs": IN_CONTAINER["victorialogs"],
    "prometheus": IN_CONTAINER["prometheus"],
    "alertmanager": IN_CONTAINER["alertmanager"],
}
PG_PORT, REDIS_PORT, APP_PORT = IN_CONTAINER["postgres"], IN_CONTAINER["redis"], IN_CONTAINER["app"]

# A second stack (the end-to-end tests) runs next to a developer's one with every port shifted
# by an offset. 100 is safe: no shifted port collides with an unshifted one.
TEST_PORT_OFFSET = 100


def ports(offset: int = 0) -> dict[str, int]:
    return {name: port + offset for name, port in PORTS.items()}


# -- the HA shape's extra processes (stack/ha.py) -----------------------------------------------

GATEWAY_PORT_BASE = 20000
GATEWAY_PORT_STEP = 20
GATEWAY_PORT_SLOTS = COLLECTOR_SLOTS
# Prometheus replica 1 and Alertmanagers 1 and 2 (web), and the Alertmanagers' gossip.
SECOND_PROMETHEUS_PORT = 19090
SECOND_ALERTMANAGER_PORT = 19093
FIRST_GOSSIP_PORT = 19095


def gateway_ports(i: int, offset: int = 0) -> dict[str, int]:
    """Gateway i's ports: a block of GATEWAY_PORT_STEP from 20000 (shifted by the port offset; 5
    gateways use 20000-20087, so offsets of 100 and 200 do not collide)."""
    base = GATEWAY_PORT_BASE + GATEWAY_PORT_STEP * i + offset
    return {slot: base + n for n, slot in enumerate(GATEWAY_PORT_SLOTS)}


def prometheus_port(replica: int, offset: int = 0) -> int:
    """Replica 0 keeps Prometheus' own port (what Grafana and the tests read); replica 1: 19090."""
    return (PORTS["prometheus"] if replica == 0 else SECOND_PROMETHEUS_PORT + replica - 1) + offset


def alertmanager_ports(i: int, offset: int = 0) -> tuple[int, int]:
    """(web, cluster) of Alertmanager i: 9093 for the first (the single stack's), then 19093,
    19094; gossip on 19095-19097."""
    web = PORTS["alertmanager"] if i == 0 else SECOND_ALERTMANAGER_PORT + i - 1
    return web + offset, FIRST_GOSSIP_PORT + i + offset


# -- the capacity benchmarks (benchmarks/) ------------------------------------------------------
# Each runs Jaeger and one collector (and a logs store or a Prometheus where it needs one) on a
# block of 100 ports of its own: apart from every stack's, and below the kernel's ephemeral range
# (32768 and up), where a client's source port once took a fixed port of a benchmark first.
BENCHMARK_BLOCKS = {"gateway_capacity": 21000, "cardinality": 21100, "logs_capacity": 21200}
BENCHMARK_OFFSETS = {
    "otlp_grpc": 17, "otlp_http": 18, "otlp_auth_grpc": 19, "otlp_auth_http": 20, "prometheus": 89,
    "telemetry": 88, "health": 33, "zpages": 79, "jaeger_otlp_grpc": 57, "jaeger_otlp_http": 58,
    "jaeger_query_http": 86, "jaeger_query_grpc": 85, "jaeger_health": 34, "jaeger_metrics": 69,
    "victorialogs": 28, "prometheus_server": 90,
}


def benchmark_ports(block: str) -> dict[str, int]:
    """The ports of one benchmark's block, by name (BENCHMARK_OFFSETS)."""
    return {name: BENCHMARK_BLOCKS[block] + offset for name, offset in BENCHMARK_OFFSETS.items()}
