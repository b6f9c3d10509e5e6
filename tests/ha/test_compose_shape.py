"""The HA shape in compose (compose.ha.yaml) on a real Docker engine: the agent finds the three
gateways by DNS (the network alias otel-gateway, re-resolved every second), span metrics stay exact
across them, both Prometheus replicas see the same counts, the Alertmanagers form one cluster, and a
gateway killed under load leaves the ring and joins it again - with the loss measured.

The project is `hitl-ha-test` (harness/compose_stack.py) with compose.test.yaml and
compose.ha.test.yaml on top, on host ports 3xxxx, so it runs beside the single shape's test project.
The images compose cannot pull are the local twins of tests/compose/twins/ (test fixtures); the
collector, agent and app images are built from the repository by `docker compose build`.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.e2e.backends import prom_query
from tests.ha.conftest import cluster_view
from tests.ha.test_alerting import DUPLICATE_WINDOW, failing_requests, pages
from tests.ha.load import (SteadyLoad, counted_requests, gateways_counting, log_records, trace_losses, traces_stored,
                           wait_whole)
from harness.polling import wait_for

ENV = "e2e"  # compose.test.yaml's deployment.environment.name for the app container
GATEWAYS = {f"otel-gateway-{i}" for i in range(3)}


@pytest.fixture(scope="module")
def compose_ha(tmp_path_factory):
    from harness.alert_sink import AlertSink
    from harness.compose_stack import bridge_gateway, bring_up, engine_env

    env = engine_env()
    host = bridge_gateway(env)  # where containers reach this machine
    sink = AlertSink(host)
    stack = bring_up(env, tmp_path_factory.mktemp("compose-ha"), alert_sink=sink.url, smtp=f"{host}:9",
                     code_host="", flush_interval="2s", rule_eval_interval="2s", topology="ha")
    try:
        alertmanagers = [stack.url(n) for n in ("alertmanager", "alertmanager_1", "alertmanager_2")]
        wait_for("the three Alertmanagers in one settled cluster",
                 lambda: all(cluster_view(url) == ("ready", 3) for url in alertmanagers), timeout=120)
        keys = {role: stack.exec("app", "env", "OTEL_SDK_DISABLED=true", "python", "-m", "app", "create-key",
                                 f"ha-{role}", role).split()[0] for role in ("pipeline", "viewer")}
        stack.alert_sink = sink
        yield stack, keys
    finally:
        stack.down(volumes=True)
        sink.close()
    assert not stack.volumes(), f"down --volumes left {stack.volumes()}"


def test_three_gateways_found_by_dns_count_every_request_exactly_once(compose_ha):
    stack, keys = compose_ha
    start = time.time()
    load = SteadyLoad(stack.app_url, keys, rate=20).start()
    time.sleep(20)
    load.stop()
    sent = load.counts()
    assert not load.failures(), load.failures()[:5]
    assert sum(sent.values()) >= 300

    counted = wait_for("the span metrics of the three gateways to add up to the requests sent",
                       lambda: (c := counted_requests(stack.prometheus_url, ENV)) == sent and c, timeout=90)
    assert gateways_counting(stack.prometheus_url, ENV) == GATEWAYS
    wait_for("the same counts in replica 1",
             lambda: counted_requests(stack.url("prometheus_1"), ENV) == counted, timeout=30)
    losses = wait_whole(stack.jaeger_url, load.sent, "every trace in Jaeger", timeout=90)
    assert losses["incomplete"] == losses["duplicate_spans"] == 0, losses
    submitted = {s.trace_id for s in load.sent if s.status == 201}
    records = wait_for("every 'review submitted' record in VictoriaLogs",
                       lambda: (r := log_records(stack.victorialogs_url, ENV)) and len(r) >= len(submitted) and r,
                       timeout=60)
    assert sorted(r["trace_id"] for r in records) == sorted(submitted)
    # Each gateway received a share of the spans through the agent (not one gateway doing it all).
    shares = {s["metric"]["instance"].split(":")[0]: round(float(s["value"][1])) for s in prom_query(
        stack.prometheus_url, f'sum by (instance) (increase(otelcol_receiver_accepted_spans'
                              f'{{job="otel-collector"}}[{int(time.time() - start) + 30}s]))')}
    assert {g for g, v in shares.items() if v > 0} >= GATEWAYS | {"otel-agent"}, shares
    print(f"\ncompose HA: sent {sum(sent.values())}, counted {sum(counted.values()):g} over {sorted(GATEWAYS)}; "
          f"traces {losses}; log records {len(records)}; accepted spans per collector {shares}")


def test_a_gateway_killed_leaves_the_dns_ring_and_joins_it_again(compose_ha):
    """SIGKILL one gateway under load for 30 s, then start it. The DNS resolver drops it within its
    1 s interval and the other two take its share; what the agent had already handed to the dead
    gateway's exporter, and what the gateway had counted but Prometheus not scraped, is the loss:
    measured and reported (docs/reliability.md), not hidden. Requests never fail."""
    stack, keys = compose_ha
    load = SteadyLoad(stack.app_url, keys, rate=10).start()
    time.sleep(10)
    killed_at = time.time()
    stack("kill", "--signal", "SIGKILL", "otel-gateway-1", timeout=60)
    time.sleep(30)
    stack("start", "otel-gateway-1", timeout=120)
    started_at = time.time()
    wait_for("otel-gateway-1 healthy again", lambda: stack.ps()["otel-gateway-1"].get("Health") == "healthy",
             timeout=90)
    time.sleep(15)  # the ring re-reads DNS every 5 s; then traffic reaches it again
    after_restart = time.time()
    time.sleep(10)
    load.stop()
    assert not load.failures(), load.failures()[:5]
    env_sent = [s for s in load.sent]
    sent = load.counts()
    # Everything sent once the gateway is back in the ring arrives whole, and reaches it too.
    late = [s for s in env_sent if s.at > after_restart]
    late_losses = wait_whole(stack.jaeger_url, late, "the requests after the restart in Jaeger", timeout=90)
    assert late_losses["incomplete"] == 0, late_losses

    # The whole run: settle (reading again only the traces not yet whole), then count.
    previous, stable_since, stored = None, time.monotonic(), None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and time.monotonic() - stable_since < 15:
        stored = traces_stored(stack.jaeger_url, env_sent, known=stored)
        now = (trace_losses(stored, env_sent)["missing"], len(log_records(stack.victorialogs_url, ENV)))
        if now != previous:
            previous, stable_since = now, time.monotonic()
        time.sleep(3)
    traces = trace_losses(traces_stored(stack.jaeger_url, env_sent), env_sent)
    # This test's requests only: the first test's are in the same environment and counters.
    submitted = {s.trace_id for s in env_sent if s.status == 201}
    logged = {r.get("trace_id") for r in log_records(stack.victorialogs_url, ENV)}
    counted = counted_requests(stack.prometheus_url, ENV, window="15m")
    row = {
        "fault": "compose-gateway-kill-30s",
        "resolver": "dns",
        "requests": sum(sent.values()),
        "failed_requests": len(load.failures()),
        "latency_before": load.latency(until=killed_at),
        "latency_during": load.latency(since=killed_at, until=started_at),
        "traces": traces,
        "log_records": {"sent": len(submitted), "missing": len(submitted - logged)},
        # Counted over both tests' requests: the first test's were all counted (asserted there).
        "span_metric_requests_counted_in_total": sum(counted.values()),
        "alerts_fired": sorted({s["metric"]["alertname"] for s in prom_query(
            stack.prometheus_url, f'max_over_time(ALERTS{{alertstate="firing", alertname!="Watchdog"}}'
                                  f'[{int(time.time() - killed_at) + 1}s])')}),
    }
    print(f"\n{json.dumps(row)}")
    if os.environ.get("HITL_HA_RESULTS"):
        with open(os.environ["HITL_HA_RESULTS"], "a") as f:
            f.write(json.dumps(row) + "\n")
    assert "OtelCollectorDown" in row["alerts_fired"], row
    # What can be lost is what the agent routed to the dead gateway before its next lookup (a batch
    # or two); losing the gateway's whole share for the 30 s (a third: ~13% of the traces) or more
    # than a few percent means the ring did not drop it.
    assert traces["missing"] <= 0.03 * traces["traces"], row
    assert row["log_records"]["missing"] <= 0.03 * len(submitted), row
    # After the restart the gateway is in the ring again: it counts this test's late requests.
    assert "otel-gateway-1" in gateways_counting(stack.prometheus_url, ENV)


def gossip_rules(action: str) -> list[list[str]]:
    """iptables rules that cut Alertmanager gossip (9094, TCP and UDP) both ways."""
    return [["iptables", action, chain, "-p", proto, flag, "9094", "-j", "DROP"]
            for chain, flag in (("INPUT", "--dport"), ("OUTPUT", "--dport")) for proto in ("tcp", "udp")]


def in_netns(stack, service: str, argv: list[str]) -> None:
    """Run argv in the network namespace of the service's container (nothing else of the host's)."""
    container = stack("ps", "--quiet", service, timeout=60).stdout.strip()
    pid = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container], env=stack.env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    subprocess.run(["nsenter", "--target", pid, "--net", *argv], check=True, capture_output=True, timeout=30)


def test_a_partitioned_alertmanager_fails_open_and_the_cluster_heals(compose_ha):
    """alertmanager-2 cut off from its two peers (gossip only: Prometheus still reaches all three).
    Alertmanager prefers a duplicate to a missed page, so each side notifies once: the receiver gets
    each group twice, never zero times, and once the partition ends the three form one cluster
    again. The duplicates are the figure docs/reliability.md records."""
    stack, _ = compose_ha
    urls = {name: stack.url(port) for name, port in
            (("alertmanager", "alertmanager"), ("alertmanager-1", "alertmanager_1"), ("alertmanager-2", "alertmanager_2"))}
    for rule in gossip_rules("-A"):
        in_netns(stack, "alertmanager-2", rule)
    try:
        wait_for("alertmanager-2 alone, the other two together",
                 lambda: cluster_view(urls["alertmanager-2"])[1] == 1 and cluster_view(urls["alertmanager"])[1] == 2,
                 timeout=120)
        environments = [f"ha-partition-{i}" for i in range(3)]
        failing_requests(f"{stack.collector_otlp_grpc}", environments)
        wait_for("a page for every group", lambda: all(pages(stack.alert_sink, env) for env in environments),
                 timeout=120)
        time.sleep(DUPLICATE_WINDOW)
        counts = {env: len(pages(stack.alert_sink, env)) for env in environments}
        # The operator is told (compose.test.yaml's fast alerts cap its `for` at 5 s).
        split = wait_for("AlertmanagerClusterSplit firing", lambda: prom_query(
            stack.prometheus_url, 'ALERTS{alertname="AlertmanagerClusterSplit", alertstate="firing"}'), timeout=60)
    finally:
        for rule in gossip_rules("-D"):
            in_netns(stack, "alertmanager-2", rule)
    print(f"\nalertmanager-2 partitioned from its peers: notifications per group {counts}")
    if os.environ.get("HITL_HA_RESULTS"):
        with open(os.environ["HITL_HA_RESULTS"], "a") as f:
            f.write(json.dumps({"fault": "compose-alertmanager-partition", "pages_per_group": counts}) + "\n")
    assert all(1 <= n <= 2 for n in counts.values()), counts
    assert {a["metric"]["instance"].split(":")[0] for a in split} >= {"alertmanager-2"}, split
    wait_for("one cluster of three again", lambda: all(cluster_view(u) == ("ready", 3) for u in urls.values()),
             timeout=120)
