"""compose.ha.yaml against stack/ha.py (names, counts, the Alertmanager cluster flags) and against
the single shape: what the HA shape does not name is the single shape's, unchanged."""

from __future__ import annotations

import re

import pytest
import yaml

from stack import ha
from tests.compose.conftest import REPO_ROOT, SHAPES

UNCHANGED = ["app", "app-init", "simulator", "postgres", "redis", "jaeger", "victorialogs", "grafana"]


@pytest.fixture(scope="module")
def both(load, env_file) -> dict[str, dict]:
    return {shape: load(env_file[0], path).model["services"] for shape, path in SHAPES.items()}


def aliases(service) -> set[str]:
    return {a for settings in (service.get("networks") or {}).values() for a in ((settings or {}).get("aliases") or [])}


def volume_at(service, target: str) -> str:
    return next(v["source"] for v in service["volumes"] if v["target"] == target)


def flag(service, name: str) -> list[str]:
    return [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith(f"{name}=")]


@pytest.mark.parametrize("name", UNCHANGED)
def test_what_the_ha_shape_does_not_name_is_the_single_shape(both, name):
    assert both["ha"][name] == both["single"][name]


def test_gateways_are_the_single_collector_with_a_pinned_id_and_a_queue_each(both):
    services = both["ha"]
    gateways = sorted(n for n in services if n.startswith("otel-gateway-"))
    assert gateways == [ha.GATEWAY_HOST.format(i=i) for i in range(ha.DEFAULT_GATEWAYS)]
    single = both["single"]["otel-collector"]
    storage = set()
    for name in gateways:
        gateway = services[name]
        assert gateway["command"] == single["command"]
        assert gateway["build"] == single["build"] and gateway["image"] == single["image"]
        assert gateway["environment"] == single["environment"] | {"OTELCOL_INSTANCE_ID": name}
        assert ha.GATEWAY_ALIAS in aliases(gateway)
        assert not gateway.get("ports"), f"{name} is published on the host"
        storage.add(volume_at(gateway, "/var/lib/otelcol/file_storage"))
    # A disk queue is one collector's: never shared.
    assert len(storage | {volume_at(services["otel-collector"], "/var/lib/otelcol/file_storage")}) == len(gateways) + 1


def test_the_agent_keeps_the_collectors_name_ports_and_token_and_resolves_the_gateway_alias(both):
    agent, single = both["ha"]["otel-collector"], both["single"]["otel-collector"]
    assert agent["command"] == ["--config=file:/etc/hitl/otel-collector/agent.yaml"]
    assert agent["ports"] == single["ports"] and agent["secrets"] == single["secrets"]
    assert ha.AGENT_HOST in aliases(agent)
    config = yaml.safe_load((REPO_ROOT / "otel-collector" / "agent.yaml").read_text())
    for name, exporter in config["exporters"].items():
        if name.startswith("load_balancing"):
            hostname = exporter["resolver"]["dns"]["hostname"]
            assert re.fullmatch(r"\$\{env:OTELCOL_GATEWAY_HOSTNAME:-(.+)\}", hostname)[1] == ha.GATEWAY_ALIAS
    # The agent starts once every gateway is healthy (its first DNS answer has them all).
    assert {g: c["condition"] for g, c in agent["depends_on"].items() if g.startswith("otel-gateway-")} == {
        ha.GATEWAY_HOST.format(i=i): "service_healthy" for i in range(ha.DEFAULT_GATEWAYS)}


def test_prometheus_replicas_read_the_ha_file_with_their_replica_label(both):
    services = both["ha"]
    names = ["prometheus", *(f"prometheus-{r}" for r in range(1, ha.PROMETHEUS_REPLICAS))]
    single_flags = [a for a in both["single"]["prometheus"]["command"] if not a.startswith("--config.file=")]
    data = set()
    for r, name in enumerate(names):
        replica = services[name]
        assert flag(replica, "--config.file") == ["/etc/hitl/prometheus/prometheus-ha.yml"]
        assert [a for a in replica["command"] if not a.startswith("--config.file=")] == single_flags
        assert replica["environment"]["PROMETHEUS_REPLICA"] == str(r)
        assert ha.PROMETHEUS_HOST.format(i=r) in aliases(replica) | {name}
        data.add(volume_at(replica, "/prometheus"))
    assert len(data) == len(names)
    assert "${PROMETHEUS_REPLICA}" in (REPO_ROOT / "prometheus" / "prometheus-ha.yml").read_text()


def test_alertmanagers_gossip_with_each_other_with_the_stacks_cluster_flags(both):
    services = both["ha"]
    names = ["alertmanager", *(f"alertmanager-{i}" for i in range(1, ha.ALERTMANAGERS))]
    hosts = {name: ha.ALERTMANAGER_HOST.format(i=i) for i, name in enumerate(names)}
    data = set()
    for name in names:
        am = services[name]
        assert hosts[name] in aliases(am) | {name}
        # The same tuning as the native cluster (one source: stack/ha.py).
        assert set(ha.ALERTMANAGER_CLUSTER_FLAGS) <= set(am["command"])
        assert flag(am, "--cluster.listen-address") == ["0.0.0.0:9094"]
        assert sorted(flag(am, "--cluster.peer")) == sorted(f"{hosts[o]}:9094" for o in names if o != name)
        assert am["secrets"] == both["single"]["alertmanager"]["secrets"]
        data.add(volume_at(am, "/alertmanager"))
    assert len(data) == len(names)
