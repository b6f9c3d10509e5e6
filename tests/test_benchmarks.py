"""The benchmarks run end to end (briefly), so the figures in docs/benchmarks.md stay
reproducible: the overhead benchmark against real apps, PostgreSQL and the collector binary,
the span-encoding benchmark, which also checks that both encoders agree, and the gateway capacity
benchmark against the collector, telemetrygen and Jaeger binaries, the app capacity benchmark
(vegeta against real app processes on PostgreSQL and Redis, through the collector), and the
span-metrics cardinality benchmark (the collector, Jaeger and a Prometheus with the real rules),
the logs benchmark (telemetrygen into VictoriaLogs, straight and through the collector), and the
app's memory with its collector gone."""

import json
import re

import pytest

from benchmarks import app_capacity, app_memory, cardinality, gateway_capacity, logs_capacity, overhead, span_encoding

# The load generators are late targets of scripts/test.sh (tests/conftest.py).
pytestmark = pytest.mark.needs_build("otelcol-hitl", "jaeger", "victoria-logs", "prometheus", "telemetrygen", "vegeta")


def test_span_encoding_benchmark_runs_and_reports_both_encoders(capsys, monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # the suite disables the SDK
    span_encoding.main(["--requests", "5", "--repeat", "2"])
    out = capsys.readouterr().out
    assert "| SDK (opentelemetry-exporter-otlp-proto-common) |" in out
    assert re.search(r"ratio \d+\.\d+x", out)


def test_gateway_capacity_benchmark_measures_both_pipelines_against_a_real_jaeger():
    rows = gateway_capacity.main(["--rates", "600", "--seconds", "4", "--variants", "full,passthrough"])
    assert {r.variant for r in rows} == {"full", "passthrough"}
    for r in rows:
        # The collector accepted the load, Jaeger took it, and the CPU reading is the collector's.
        assert r.accepted_spans_per_s > 100 and r.exported_spans_per_s > 100, r
        assert r.refused_spans == r.dropped_spans == 0, r
        assert 0 < r.cpu_cores < 2 and r.spans_per_cpu_second > 0 and r.rss_peak_mib > 10, r
        assert r.jaeger_cpu_cores > 0, r


def test_gateway_capacity_alone_pins_the_collector_to_a_core_with_a_sink_behind_it():
    rows = gateway_capacity.main(["--alone", "--rates", "600", "--seconds", "3", "--variants", "full"])
    (row,) = rows
    # Everything the collector took reached the sink (in Jaeger's place), and the collector had one core.
    assert row.accepted_spans_per_s > 100 and row.exported_spans_per_s >= 0.95 * row.accepted_spans_per_s, row
    assert 0 < row.cpu_cores <= 1.05 and row.jaeger_cpu_cores > 0, row


def test_overhead_benchmark_runs_side_by_side(capsys, postgres_admin_url):
    overhead.main(["--database-url", postgres_admin_url, "--rounds", "1", "--requests", "10", "--block", "5",
                   "--variant", "default-gc:GC_GEN0_THRESHOLD=0", "--otel-defaults"])
    out = capsys.readouterr().out
    for endpoint in ("list", "get", "decide"):
        for variant in ("telemetry", "disabled", "default-gc", "otel-defaults"):
            assert re.search(rf"\| {endpoint} \| {variant} \| \d+ \|", out), (endpoint, variant, out)
    assert "the process's CPU clock" in out
    assert "| decide | telemetry |" in out.split("median of turns")[1]


def test_app_memory_benchmark_samples_both_variants_side_by_side(capsys, tmp_path):
    out = tmp_path / "app-memory.jsonl"
    app_memory.main(["--requests", "40", "--every", "20", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["variant"], r["requests"]) for r in rows] == [
        (v, n) for v in app_memory.VARIANTS for n in (0, 20, 40)]
    assert all(r["kind"] == "app-memory" and r["rss_mib"] > 0 for r in rows)
    assert re.search(r"^\| 40 \| [0-9.]+ \| [0-9.]+ \| [+-][0-9.]+ \|$", capsys.readouterr().out, re.M)


def test_the_otel_defaults_reference_really_has_the_default_shape(tmp_path, postgres_admin_url):
    """The `--otel-defaults` reference point is the same service with each instrumentation's
    defaults: the spans and metrics app/telemetry leaves out are there, exported over OTLP."""
    import httpx

    from app.auth.models import Role
    from harness.app_process import AppProcess
    from harness.databases import fresh_postgres_database, migrated_with_keys
    from harness.otlp_sink import OtlpSink
    from harness.polling import wait_for

    url = fresh_postgres_database(postgres_admin_url)
    token = migrated_with_keys(url, {"bench-viewer": Role.viewer})["bench-viewer"]
    sink = OtlpSink()
    proc = AppProcess(env={"DATABASE_URL": url, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_METRIC_EXPORT_INTERVAL": "500",
                           "OTEL_SERVICE_NAME": "hitl-review"},
                      log_path=tmp_path / "app.log", module="benchmarks.otel_defaults")
    try:
        assert httpx.get(proc.url + "/api/v1/reviews", headers={"X-API-Key": token}).status_code == 200
    finally:
        proc.stop()  # flushes the batch processors
    try:
        wait_for("the metrics", lambda: "http.server.duration" in sink.metrics, timeout=10)
        names = {s.name for s in sink.spans}
        assert {"GET /api/v1/reviews", "GET /api/v1/reviews http send", "connect"} <= names, names
        assert "db.client.connections.usage" in sink.metrics
    finally:
        sink.stop()


def test_app_capacity_benchmark_loads_the_mix_open_loop_with_and_without_telemetry(postgres_admin_url, redis_url):
    rows = app_capacity.main(["--database-url", postgres_admin_url, "--redis-url", redis_url,
                              "--rates", "15", "--seconds", "3", "--warmup", "1", "--variants", "on-2,off-1"])
    assert {r.variant for r in rows} == {"on-2", "off-1"}
    for r in rows:
        # Every request of the mix answered 200 (list, get, stats) or 201 (submit, decide).
        assert r.errors == 0 and set(r.status_codes) == {"200", "201"}, r
        assert r.requests >= 40 and abs(r.achieved_rps - 15) < 2, r
        assert 0 < r.p50_ms <= r.p95_ms <= r.p99_ms and r.app_cpu_ms_per_request > 0, r
        # With telemetry on, each request's spans went through the collector; off, none did.
        assert (r.collector_spans >= r.requests) if r.telemetry else (r.collector_spans == 0), r



def test_the_app_knee_is_the_last_rate_within_the_slo_before_the_first_outside():
    def step(rate, p95, errors=0):
        return app_capacity.Step("on-1", 1, True, rate, rate, 100, errors, errors / 100, 1, p95, p95, p95, 1, 1, 0, 100, {})
    rows = [step(10, 50), step(20, 120), step(40, 499), step(60, 700), step(80, 300)]
    assert app_capacity.knee(rows, "on-1") == 40  # 80 is back under 500 ms, but after a failed step
    assert app_capacity.knee([step(10, 50), step(20, 60, errors=1)], "on-1") == 10
    assert app_capacity.knee([step(10, 800)], "on-1") is None


def test_cardinality_benchmark_counts_the_series_and_shows_the_limit_overflowing():
    # 2 routes x 2 statuses on one instance: exactly the limit of 4, so no overflow; then 3 x 2 on
    # two instances: 6 combinations each, the limit is per instance, so each keeps 4 and overflows.
    rows = cardinality.main(["--steps", "2x2x1,3x2x2", "--limit", "4", "--seconds", "5"])
    at_limit, over = rows
    import yaml
    config = yaml.safe_load((cardinality.REPO / "otel-collector" / "config.yaml").read_text())
    buckets = config["connectors"]["span_metrics"]["histogram"]["explicit"]["buckets"]
    per_combination = 1 + len(buckets) + 3  # calls; the histogram's buckets, +Inf, sum and count
    assert (at_limit.collector_series, at_limit.overflow_series) == (4 * per_combination, 0), at_limit
    assert (over.collector_series, over.overflow_series) == (2 * 5 * per_combination, 2 * per_combination), over
    for r in rows:
        # Prometheus scraped them all, ran the real rules over them (more series than scraped).
        assert r.prometheus_span_series == r.collector_series, r
        assert r.prometheus_head_series > r.prometheus_span_series, r
        assert r.prometheus_samples_per_s > 0 and r.prometheus_rss_mib > 10 and r.collector_rss_mib > 10, r


def test_logs_capacity_benchmark_stores_every_record_straight_and_through_the_gateway():
    rows = logs_capacity.main(["--rates", "500", "--seconds", "4"])
    assert {r.variant for r in rows} == {"direct", "gateway"}
    for r in rows:
        # Every record telemetrygen made reached VictoriaLogs, and the CPU readings are real.
        assert r.sent_records > 1000 and r.lost_records == 0, r
        assert r.victorialogs_cpu_cores > 0 and r.victorialogs_records_per_cpu_second > 0, r
        assert (r.collector_cpu_cores > 0) == (r.variant == "gateway"), r


def test_the_capacity_tables_give_each_runs_knee_and_the_spread(tmp_path):
    from benchmarks import plot_capacity

    def row(run, rate, p95, errors=0):
        return {"run": run, "variant": "on-1", "offered_rps": rate, "achieved_rps": rate, "p50_ms": 5, "p95_ms": p95,
                "p99_ms": p95, "errors": errors, "app_cpu_ms_per_request": 9.0}
    rows = [row("a", 30, 20), row("a", 60, 40), row("a", 90, 900), row("b", 30, 25), row("b", 60, 600, 3),
            row("b", 90, 30), row("c", 30, 10), row("c", 60, 50), row("c", 90, 80)]
    (tmp_path / "app.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = plot_capacity.tables(tmp_path)
    assert "- knee of on-1: 60 [30-90] req/s (runs: 60, 30, 90)" in text, text
    assert "| on-1 | 60 | 60 | 5 | 50 [40-600] | 50 [40-600] | 0 [0-3] | 9.0 |" in text, text
