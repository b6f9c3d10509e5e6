"""HA alerting: two Prometheus replicas with the same rules send every alert to all three
Alertmanagers, which gossip their notification log, so a receiver gets one notification per alert
group - with both replicas firing, with one Prometheus down, with one Alertmanager down.

Alert groups are made with the real rules: HighErrorRate (critical, PagerDuty) for hitl-review in
a deployment environment of the trial's own (the route groups by environment), from server spans
answered 500 that the test sends through the agent like any service. Alertmanager's peers wait
their position x peer_timeout (15 s) before notifying, to see whether an earlier peer did; a
duplicate would arrive by then, so each trial waits 45 s after the first notification.
"""

from __future__ import annotations

import os
import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from harness.polling import wait_for

TRIALS = 20
DUPLICATE_WINDOW = 45


def failing_requests(agent: str, environments: list[str], seconds: float = 20, per_second: int = 4) -> None:
    """Server spans of hitl-review answered 500 in each environment, through the agent. (The test
    process runs with OTEL_SDK_DISABLED=true, tests/conftest.py: these providers must not.)"""
    disabled = os.environ.pop("OTEL_SDK_DISABLED", None)
    try:
        _send_failing_requests(agent, environments, seconds, per_second)
    finally:
        if disabled is not None:
            os.environ["OTEL_SDK_DISABLED"] = disabled


def _send_failing_requests(agent: str, environments: list[str], seconds: float, per_second: int) -> None:
    providers = []
    for env in environments:
        provider = TracerProvider(resource=Resource.create({"service.name": "hitl-review",
                                                            "deployment.environment.name": env}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=agent, insecure=True),
                                                       schedule_delay_millis=500))
        providers.append(provider)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for provider in providers:
            tracer = provider.get_tracer("ha-alerting")
            for _ in range(per_second):
                with tracer.start_as_current_span("GET /api/v1/trial", kind=SpanKind.SERVER,
                                                  attributes={"http.request.method": "GET", "http.route": "/api/v1/trial",
                                                              "http.response.status_code": 500}) as span:
                    span.set_status(Status(StatusCode.ERROR))
        time.sleep(1)
    for provider in providers:
        provider.shutdown()


def pages(sink, env: str) -> list:
    """PagerDuty trigger events of the HighErrorRate group of env."""
    def of_group(n) -> bool:
        firing = ((n.body.get("payload") or {}).get("custom_details") or {}).get("firing") or []
        return n.body.get("event_action") == "trigger" and any(
            a.get("labels", {}).get("alertname") == "HighErrorRate"
            and a["labels"].get("deployment_environment_name") == env for a in firing)
    return [n for n in sink.received("pagerduty") if of_group(n)]


def notified_once_each(ha_stack, ha_sink, environments: list[str]) -> dict[str, int]:
    failing_requests(ha_stack.agent_otlp_grpc, environments)
    try:
        wait_for("a page for every group", lambda: all(pages(ha_sink, env) for env in environments), timeout=120)
    except AssertionError as e:
        seen = [(n.body.get("payload") or {}).get("summary") for n in ha_sink.received("pagerduty")]
        raise AssertionError(f"{e}; pages without one: {[env for env in environments if not pages(ha_sink, env)]}; "
                             f"PagerDuty got: {seen[-10:]}") from None
    time.sleep(DUPLICATE_WINDOW)
    return {env: len(pages(ha_sink, env)) for env in environments}


def firing_in(prometheus_url: str, env: str) -> bool:
    from tests.e2e.backends import prom_query

    return bool(prom_query(prometheus_url, f'ALERTS{{alertname="HighErrorRate", alertstate="firing", '
                                           f'deployment_environment_name="{env}"}}'))


def test_twenty_groups_fired_by_both_replicas_page_once_each(ha_stack, ha_sink):
    environments = [f"ha-trial-{i:02d}" for i in range(TRIALS)]
    start = time.time()
    counts = notified_once_each(ha_stack, ha_sink, environments)
    # Both replicas evaluated the rule and fired (the dedup had something to do).
    assert all(firing_in(url, environments[0]) for url in ha_stack.prometheus_urls)
    duplicated = {env: [(round(n.at - start, 1), n.body["payload"]["summary"],
                         [a.get("startsAt") for a in n.body["payload"]["custom_details"]["firing"]])
                        for n in pages(ha_sink, env)] for env, count in counts.items() if count != 1}
    assert not duplicated, f"groups not paged exactly once: {duplicated}"
    print(f"\n{TRIALS} groups, both replicas firing: notifications per group {sorted(set(counts.values()))}")


@pytest.mark.parametrize("down", ["prometheus-1", "alertmanager"])
def test_one_replica_down_still_pages_exactly_once(ha_stack, ha_sink, down):
    ha_stack.kill(down)
    try:
        environments = [f"ha-{down}-down-{i}" for i in range(3)]
        counts = notified_once_each(ha_stack, ha_sink, environments)
    finally:
        ha_stack.start()
    assert counts == {env: 1 for env in environments}, counts
    print(f"\n{down} killed: notifications per group {counts}")
