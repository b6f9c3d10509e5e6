"""Exactness across shards: the agent routes by trace id to three gateways, each derives span
metrics from its share, and Prometheus sums them (collector_instance_id) to the exact requests sent.
"""

from __future__ import annotations

import time

from harness.polling import wait_for
from tests.e2e.backends import jaeger_trace, prom_exemplars, simulator_edge
from tests.ha.load import SteadyLoad, counted_requests, gateways_counting, log_records, wait_whole

ENV = "ha-shards"


def test_three_gateways_count_every_request_exactly_once(ha_stack, start_app):
    app = start_app(ENV)
    load = SteadyLoad(app.url, app.keys, rate=20).start()
    time.sleep(20)
    load.stop()
    sent = load.counts()
    assert not load.failures(), load.failures()[:5]
    assert sum(sent.values()) >= 300

    counted = wait_for("the span metrics of every gateway to add up to the requests sent",
                       lambda: (c := counted_requests(ha_stack.prometheus_url, ENV)) == sent and c, timeout=60)
    # Trace-id routing spreads every route over every gateway: each counted a share.
    assert gateways_counting(ha_stack.prometheus_url, ENV) == {f"gateway-{i}" for i in range(ha_stack.gateways)}
    # The other replica scrapes the same gateways: the same counts (once it has scraped them).
    wait_for("the same counts in the other replica",
             lambda: counted_requests(ha_stack.prometheus_urls[1], ENV) == counted, timeout=30)

    # Every trace is stored whole, once; every submitted review logged once, with its trace id.
    losses = wait_whole(ha_stack.jaeger_url, load.sent, "every trace in Jaeger", timeout=60)
    assert losses["incomplete"] == losses["duplicate_spans"] == 0, losses
    submitted = {s.trace_id for s in load.sent if s.status == 201}
    records = wait_for("every 'review submitted' record in VictoriaLogs",
                       lambda: (r := log_records(ha_stack.victorialogs_url, ENV)) and len(r) >= len(submitted) and r,
                       timeout=60)
    assert sorted(r["trace_id"] for r in records) == sorted(submitted)
    print(f"\nsent {sum(sent.values())} requests ({len(submitted)} submits); counted {sum(counted.values()):g} "
          f"over {ha_stack.gateways} gateways; traces {losses}; log records {len(records)}")


def test_exemplars_from_every_gateway_resolve_in_jaeger(ha_stack, start_app):
    app = start_app("ha-exemplars")
    load = SteadyLoad(app.url, app.keys, rate=20).start()
    started = time.time()
    time.sleep(15)
    load.stop()
    sent_ids = {s.trace_id for s in load.sent}
    # The requests' server spans only: the process's own background work (outbox, gauges) has
    # traces - and exemplars - of its own.
    query = ('traces_span_metrics_duration_seconds_bucket{deployment_environment_name="ha-exemplars", '
             'span_kind="SPAN_KIND_SERVER", http_route=~"/api/.+"}')
    exemplars = wait_for(">= 30 exemplars", lambda: (e := prom_exemplars(ha_stack.prometheus_url, query, started - 5))
                         and len(e) >= 30 and e, timeout=60)
    gateways = {e["series"].get("collector_instance_id") for e in exemplars}
    assert gateways == {f"gateway-{i}" for i in range(ha_stack.gateways)}, gateways
    sample = exemplars[:60]
    unresolved = []
    for e in sample:
        trace_id, span_id = e["labels"]["trace_id"], e["labels"]["span_id"]
        assert trace_id in sent_ids
        trace = wait_for(f"trace {trace_id}", lambda t=trace_id: jaeger_trace(ha_stack.jaeger_url, t), timeout=30)
        if span_id not in {s["spanID"] for s in trace["spans"]}:
            unresolved.append(trace_id)
    assert not unresolved, f"{len(unresolved)} of {len(sample)} exemplars do not resolve"
    print(f"\n{len(sample)} exemplars from {sorted(gateways)} resolve in Jaeger")


def test_the_service_graph_edge_survives_sharding(ha_stack, start_app):
    """The simulator calls the service; caller and callee spans of one trace meet on one gateway
    (trace-id routing) and Jaeger derives the hitl-simulator -> hitl-review edge."""
    app = start_app("ha-graph")
    edge = simulator_edge(jaeger_url=ha_stack.jaeger_url, app_url=app.url, otlp_endpoint=ha_stack.agent_otlp_grpc,
                          keys=app.keys, base_env=ha_stack.env)
    assert edge["callCount"] > 0
