"""With no collector listening, requests are unaffected, memory stays bounded, shutdown stays
within its grace period, and export resumes by itself when a receiver comes back."""

import statistics
import time

import httpx
import pytest

from app.auth.models import Role
from harness.app_process import AppProcess, free_port
from harness.databases import migrated_with_keys
from harness.factories import review_body
from harness.otlp_sink import OtlpSink
from harness.polling import wait_for

MIB = 1024 * 1024


@pytest.fixture
def app_without_collector(tmp_path):
    url = f"sqlite:///{tmp_path / 'hitl.db'}"
    keys = migrated_with_keys(url, {"p": Role.pipeline, "v": Role.viewer})
    pipeline, viewer = keys["p"], keys["v"]
    port = free_port()  # nothing listens here (yet)
    app = AppProcess(
        env={
            "DATABASE_URL": url,
            "OTEL_SERVICE_NAME": "hitl-review",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
        log_path=tmp_path / "app.log",
    )
    yield app, port, {"X-API-Key": pipeline}, {"X-API-Key": viewer}
    app.stop()


def _burst(client, viewer, n):
    latencies = []
    for _ in range(n):
        start = time.perf_counter()
        r = client.get("/api/v1/reviews", params={"limit": 5}, headers=viewer)
        latencies.append(time.perf_counter() - start)
        assert r.status_code == 200
    return latencies


def test_requests_memory_and_recovery_without_a_collector(app_without_collector):
    app, port, pipeline, viewer = app_without_collector
    client = httpx.Client(base_url=app.url, timeout=10)
    for _ in range(5):
        assert client.post("/api/v1/reviews", json=review_body(), headers=pipeline).status_code == 201
    # Warm up until the batch processors' queues are full (2048 spans and 2048 log records:
    # about 700 requests; 300 did not fill them, and the filling was then counted as growth).
    _burst(client, viewer, 1500)
    rss_before = app.rss_bytes()
    latencies = _burst(client, viewer, 4000)
    rss_after = app.rss_bytes()
    # Bounded: the processors drop what does not fit their queues. Measured here over 3000-request
    # bursts: +8 to +10 MiB over 6000 requests, about 0 with a collector listening.
    assert rss_after - rss_before < 25 * MIB, f"RSS grew {(rss_after - rss_before) / MIB:.1f} MiB"
    # Unaffected: no request waits for the exporter (a generous bound; speed is benchmarked).
    assert statistics.median(latencies) < 0.05 and max(latencies) < 1.0

    sink = OtlpSink(port)
    try:
        client.get("/api/v1/stats", headers=viewer)
        # gRPC waits between reconnection attempts with a backoff that grows while the receiver
        # stays away, up to 120 s (gRPC's connection backoff); resuming within that is by itself.
        wait_for("spans to reach the receiver once it is back", lambda: any(
            s.attributes.get("http.route") == "/api/v1/stats" for s in sink.spans), timeout=150)
        wait_for("metrics to reach the receiver", lambda: "hitl.reviews.created" in sink.metrics, timeout=150)
    finally:
        sink.stop()


def test_shutdown_is_bounded_when_the_collector_is_unreachable(app_without_collector):
    app, _port, pipeline, _viewer = app_without_collector
    httpx.post(app.url + "/api/v1/reviews", json=review_body(), headers=pipeline)
    assert app.stop() < 10, "shutdown must fit a 10 s grace period"
