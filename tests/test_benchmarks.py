"""The benchmarks run end to end (briefly), so the figures in docs/benchmarks.md stay
reproducible: the overhead benchmark against real apps, PostgreSQL and the collector binary,
and the span-encoding benchmark, which also checks that both encoders agree."""

import re

from benchmarks import overhead, span_encoding


def test_span_encoding_benchmark_runs_and_reports_both_encoders(capsys, monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # the suite disables the SDK
    span_encoding.main(["--requests", "5", "--repeat", "2"])
    out = capsys.readouterr().out
    assert "| SDK (opentelemetry-exporter-otlp-proto-common) |" in out
    assert re.search(r"ratio \d+\.\d+x", out)


def test_overhead_benchmark_runs_side_by_side(capsys, postgres_admin_url):
    overhead.main(["--database-url", postgres_admin_url, "--rounds", "1", "--requests", "10", "--block", "5",
                   "--variant", "default-gc:GC_GEN0_THRESHOLD=0"])
    out = capsys.readouterr().out
    for endpoint in ("list", "get", "decide"):
        for variant in ("telemetry", "disabled", "default-gc"):
            assert re.search(rf"\| {endpoint} \| {variant} \| \d+ \|", out), (endpoint, variant, out)
    assert "the process's CPU clock" in out
    assert "| decide | telemetry |" in out.split("median of turns")[1]
