"""Every config file the stack ships is checked by the pinned binary that reads it, and the
collector build contains exactly the components its config uses."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from stack.services import Options, REPO_ROOT, TEST_PORT_OFFSET, parse_duration, render_prometheus_config

COLLECTOR_CONFIG = REPO_ROOT / "otel-collector" / "config.yaml"
AGENT_CONFIG = REPO_ROOT / "otel-collector" / "agent.yaml"
# binary -> its config: the gateway (and single) collector, and the agent of the HA topology.
COLLECTORS = {"otelcol-hitl": COLLECTOR_CONFIG, "otelcol-hitl-agent": AGENT_CONFIG}
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")


@pytest.fixture(scope="module")
def binaries() -> dict[str, str]:
    from stack.cli import binary_paths, build

    assert build(["otelcol-hitl", "otelcol-hitl-agent", "jaeger", "prometheus", "alertmanager"]) == 0
    return binary_paths()


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "JAEGER_"))}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, env=env | kw.pop("env", {}),
                          **kw)


@pytest.mark.parametrize("binary", COLLECTORS)
def test_collector_config_validates(binaries, binary):
    done = run([binaries[binary], "validate", f"--config=file:{COLLECTORS[binary]}"])
    assert done.returncode == 0, done.stderr


def test_the_agent_with_the_native_static_resolver_validates(binaries, tmp_path):
    """The native HA stack's second agent config (a static list instead of DNS) merges cleanly."""
    from stack.services import Stack

    stack = Stack(Options(run_dir=tmp_path, cache_dir=tmp_path, topology="ha"), binaries)
    resolver = tmp_path / "resolver.yaml"
    stack.write_agent_resolver(resolver)
    done = run([binaries["otelcol-hitl-agent"], "validate", f"--config=file:{AGENT_CONFIG}", f"--config=file:{resolver}"])
    assert done.returncode == 0, done.stderr
    merged = yaml.safe_load(resolver.read_text())["exporters"]
    assert {name for name in merged} == {name for name in yaml.safe_load(AGENT_CONFIG.read_text())["exporters"]
                                         if name.startswith("load_balancing")}


def test_collector_validate_rejects_a_component_missing_from_the_build(binaries, tmp_path):
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    config["connectors"]["servicegraph"] = {}
    config["service"]["pipelines"]["traces"]["exporters"].append("servicegraph")
    broken = tmp_path / "config.yaml"
    broken.write_text(yaml.safe_dump(config))
    done = run([binaries["otelcol-hitl"], "validate", f"--config=file:{broken}"])
    assert done.returncode != 0
    assert "servicegraph" in done.stderr


@pytest.mark.parametrize("binary", COLLECTORS)
def test_the_collector_build_has_exactly_the_components_the_config_uses(binaries, binary):
    built = yaml.safe_load(run([binaries[binary], "components"]).stdout)
    in_build = {(section, c["name"]) for section in SECTIONS for c in built.get(section) or []}
    config = yaml.safe_load(COLLECTORS[binary].read_text())
    used = {(section, name.split("/")[0]) for section in SECTIONS for name in config.get(section) or {}}
    assert in_build == used, f"built but unused: {in_build - used}; used but not built: {used - in_build}"


def test_jaeger_config_validates(binaries):
    done = run([binaries["jaeger"], "validate", f"--config=file:{REPO_ROOT / 'jaeger' / 'config.yaml'}"])
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("offset", [0, TEST_PORT_OFFSET])
def test_prometheus_config_and_its_native_rendering_pass_promtool(binaries, tmp_path, offset):
    source = (REPO_ROOT / "prometheus" / "prometheus.yml").read_text()
    rendered = render_prometheus_config(source, Options(run_dir=tmp_path, cache_dir=tmp_path, port_offset=offset,
                                                        flush_interval="2s", scrape_interval="2s"))
    (tmp_path / "prometheus.yml").write_text(rendered)
    (tmp_path / "rules").symlink_to(REPO_ROOT / "prometheus" / "rules")
    for path in (REPO_ROOT / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml"):
        done = run([binaries["promtool"], "check", "config", str(path)])
        assert done.returncode == 0, done.stdout + done.stderr
    targets = yaml.safe_load(rendered)
    exporter = next(j for j in targets["scrape_configs"] if j["job_name"] == "otel-collector-exporter")
    # Exemplars are exposed for one span-metrics flush only: scraped at half of it.
    assert exporter["scrape_interval"] == "1000ms"
    assert exporter["static_configs"][0]["targets"] == [f"127.0.0.1:{8889 + offset}"]


@pytest.mark.parametrize("replica", [0, 1])
def test_the_ha_rendering_passes_promtool_and_reaches_every_gateway_and_alertmanager(binaries, tmp_path, replica):
    from stack import ha
    from stack.services import Stack

    opts = Options(run_dir=tmp_path, cache_dir=tmp_path, topology="ha", gateways=3, port_offset=300)
    stack = Stack(opts, binaries)
    stack.config = tmp_path
    stack.render_prometheus(replica)
    rendered = tmp_path / ha.service_name("prometheus", replica) / "prometheus.yml"
    for path in (REPO_ROOT / "prometheus" / "prometheus-ha.yml", rendered):
        done = run([binaries["promtool"], "check", "config", str(path)], env={"PROMETHEUS_REPLICA": str(replica)})
        assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(rendered.read_text())
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert jobs["otel-collector-exporter"] == [f"127.0.0.1:{ha.gateway_ports(i, 300)['otelcol_prometheus']}"
                                               for i in range(3)]
    assert jobs["prometheus"] == [f"127.0.0.1:{ha.prometheus_port(r, 300)}" for r in range(ha.PROMETHEUS_REPLICAS)]
    assert config["global"]["external_labels"] == {"stack": "hitl", "replica": "${PROMETHEUS_REPLICA}"}
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{ha.alertmanager_ports(i, 300)[0]}" for i in range(ha.ALERTMANAGERS)]


def test_prometheus_rendering_refuses_a_target_it_cannot_map(tmp_path):
    source = (REPO_ROOT / "prometheus" / "prometheus.yml").read_text().replace('"jaeger:8888"', '"redis:6379"')
    with pytest.raises(ValueError, match="redis"):
        render_prometheus_config(source, Options(run_dir=tmp_path, cache_dir=tmp_path))


def test_native_ports_shifted_for_tests_do_not_collide_with_the_default_ones():
    from stack.services import APP_PORT, PG_PORT, PORTS, REDIS_PORT

    base = {*PORTS.values(), PG_PORT, REDIS_PORT, APP_PORT}
    shifted = {p + TEST_PORT_OFFSET for p in base}
    assert not base & shifted
    assert len(base) == len(PORTS) + 3
    assert max(shifted) < 65536


def test_the_ha_ports_collide_with_nothing_at_any_offset_the_tests_use():
    """Offsets: 0 (a developer), 100 (e2e), 200 (page benchmark), 300 (tests/ha)."""
    from stack import ha
    from stack.services import PORTS
    from tests.support.ports import NATIVE_OFFSETS, native_port_list

    for offset in NATIVE_OFFSETS:
        # Replica 0 and the first Alertmanager are the single stack's (same port on purpose).
        assert ha.prometheus_port(0, offset) == PORTS["prometheus"] + offset
        assert ha.alertmanager_ports(0, offset)[0] == PORTS["alertmanager"] + offset
    everything = [p for offset in NATIVE_OFFSETS for p in native_port_list(offset)]
    assert len(everything) == len(set(everything)), sorted(p for p in everything if everything.count(p) > 1)


def test_alertmanager_rendering_for_the_native_stack_passes_amtool(binaries, tmp_path):
    from stack.services import ALERTMANAGER_SECRETS_DIR, PAGERDUTY_URL, render_alertmanager_config

    source = (REPO_ROOT / "alertmanager" / "alertmanager.yml").read_text()
    opts = Options(run_dir=tmp_path, cache_dir=tmp_path, fast_alerts=True, alert_sink="http://127.0.0.1:1",
                   alert_smtp="127.0.0.1:2")
    rendered = render_alertmanager_config(source, opts, tmp_path / "secrets")
    assert ALERTMANAGER_SECRETS_DIR not in rendered and PAGERDUTY_URL not in rendered
    config = yaml.safe_load(rendered)
    assert config["global"]["smtp_smarthost"] == "127.0.0.1:2"
    assert config["global"]["smtp_require_tls"] is False
    assert config["receivers"][0]["pagerduty_configs"][0]["url"] == "http://127.0.0.1:1/pagerduty"
    routes = [config["route"], *config["route"]["routes"]]
    assert all(parse_duration(r.get("group_wait", "0s")) <= 1 for r in routes)
    (tmp_path / "alertmanager.yml").write_text(rendered)
    done = run([binaries["amtool"], "check-config", str(tmp_path / "alertmanager.yml")])
    assert done.returncode == 0, done.stdout + done.stderr

