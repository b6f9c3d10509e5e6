"""Span-metrics cardinality: how many series routes x status codes x instances make, what they
cost the collector and Prometheus, and that the cardinality limit holds.

    python -m benchmarks.cardinality [--steps 1x1x1,10x4x1,50x4x2,100x4x4,250x4x4,250x4x8,600x4x2]
                                     [--seconds 30] [--limit 2000] [--out results.jsonl]

A step `RxSxI` sends, for each of I instances (service.instance.id), one server span per route
(R of them) and status code (S of them: 200, 404, 201, 500, 409, ...) every scrape interval, for
--seconds, into the gateway's full pipeline (otel-collector/config.yaml: span_metrics with
exemplars, the Prometheus exporter; traces on to a real Jaeger) with the connector's cardinality
limit set to --limit (the config's default is 2000). A real Prometheus scrapes the collector as
prometheus/prometheus.yml does (its interval, honor_labels, exemplar storage) and evaluates the
real rule files (recording, alerts, SLOs) over what it scraped.

A fresh collector and a fresh Prometheus per step. Reported per step: the dimension combinations
sent, the span-metric series the collector exposes and how many of them are the overflow series
(otel_metric_overflow="true"), Prometheus' head series and its span-metric series, its resident
memory and Go heap, the samples it appends per second and its CPU, and the collector's RSS and
heap. The first step (1x1x1) is the baseline: memory per thousand series is the growth over it.

The limit is kept per resource (connector.go, getOrCreateResourceMetrics, v0.161.0: each
resource's metrics get their own limit), so I instances can make I x limit combinations; a step
with more than --limit combinations per instance shows the overflow series taking the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from benchmarks import common
from stack import process
from stack.ports import benchmark_ports

REPO = Path(__file__).resolve().parents[1]
PORTS = benchmark_ports("cardinality")
PROMETHEUS_PORT = PORTS["prometheus_server"]
STATUSES = [200, 404, 201, 500, 409, 503, 401, 422]
SPAN_METRIC = re.compile(r"^traces_span_metrics_\w+[{ ]")


@dataclass
class Row:
    routes: int
    statuses: int
    instances: int
    combinations: int
    limit: int
    spans_sent: int
    collector_series: int
    overflow_series: int
    prometheus_head_series: int
    prometheus_span_series: int
    prometheus_rss_mib: float
    prometheus_heap_mib: float
    prometheus_samples_per_s: float
    prometheus_cpu_cores: float
    collector_rss_mib: float
    collector_heap_mib: float


def parse_step(text: str) -> tuple[int, int, int]:
    routes, statuses, instances = (int(x) for x in text.lower().split("x"))
    if not (routes > 0 and 0 < statuses <= len(STATUSES) and instances > 0):
        raise argparse.ArgumentTypeError(f"step {text!r}: want RxSxI with 1 <= S <= {len(STATUSES)}")
    return routes, statuses, instances


def _attr(key: str, value: str | int) -> KeyValue:
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def requests_for(instance: int, routes: int, statuses: int, now_ns: int, per_request: int = 2000):
    """One pass of an instance: a server span per (route, status), in OTLP requests of <= per_request."""
    resource = Resource(attributes=[_attr("service.name", "hitl-review"),
                                    _attr("service.instance.id", f"bench-{instance}"),
                                    _attr("deployment.environment.name", "bench")])
    spans = []
    for r in range(routes):
        route = f"/api/v1/bench{r}/{{item_id}}"
        for code in STATUSES[:statuses]:
            spans.append(Span(
                trace_id=os.urandom(16), span_id=os.urandom(8), name=f"GET {route}", kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now_ns - 12_000_000, end_time_unix_nano=now_ns,
                attributes=[_attr("http.route", route), _attr("http.request.method", "GET"),
                            _attr("http.response.status_code", code)],
                status=Status(code=Status.STATUS_CODE_ERROR if code >= 500 else Status.STATUS_CODE_UNSET)))
    for i in range(0, len(spans), per_request):
        yield ExportTraceServiceRequest(resource_spans=[ResourceSpans(
            resource=resource, scope_spans=[ScopeSpans(scope=InstrumentationScope(name="benchmarks.cardinality"),
                                                       spans=spans[i:i + per_request])])]).SerializeToString()


def post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str) -> float:
    m = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.eE+-]+)", text, re.M)
    return float(m[1]) if m else 0.0


def exporter_scrape() -> dict:
    """prometheus/prometheus.yml's global settings and its job for the collector's exporter."""
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "otel-collector-exporter")
    return {"global": config["global"], "job": job}


class CardinalityBench:
    def __init__(self, work: Path, limit: int):
        self.work, self.limit = work, limit
        self.bins = common.binaries("otelcol-hitl", "jaeger", "prometheus")
        self.pipeline = common.Pipeline(self.bins, work, PORTS)
        self.scrape = exporter_scrape()

    def start_prometheus(self, data: Path) -> subprocess.Popen:
        config = self.work / "prometheus.yml"
        job = dict(self.scrape["job"], static_configs=[{"targets": [f"{common.HOST}:{PORTS['prometheus']}"]}])
        config.write_text(yaml.safe_dump({
            "global": {k: v for k, v in self.scrape["global"].items() if k != "external_labels"},
            "rule_files": [str(REPO / "prometheus" / "rules" / "*.yml")],
            "scrape_configs": [job]}))
        proc = subprocess.Popen([self.bins["prometheus"], f"--config.file={config}", f"--storage.tsdb.path={data}",
                                 f"--web.listen-address={common.HOST}:{PROMETHEUS_PORT}", "--enable-feature=exemplar-storage",
                                 "--log.level=warn"],
                                stdout=open(self.work / "prometheus.log", "a"), stderr=subprocess.STDOUT)
        common.wait_http(f"http://{common.HOST}:{PROMETHEUS_PORT}/-/ready")
        return proc

    def query(self, expr: str) -> float:
        url = f"http://{common.HOST}:{PROMETHEUS_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        result = json.loads(get_text(url))["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    def measure(self, routes: int, statuses: int, instances: int, seconds: float) -> Row:
        interval = self.scrape["job"].get("scrape_interval", self.scrape["global"]["scrape_interval"])
        every = float(interval.rstrip("ms")) / (1000 if interval.endswith("ms") else 1)
        collector = self.pipeline.start_collector("full", {
            "OTELCOL_SPANMETRICS_CARDINALITY_LIMIT": str(self.limit)})
        data = self.work / "prometheus-data"
        shutil.rmtree(data, ignore_errors=True)
        prometheus = self.start_prometheus(data)
        prom_metrics = f"http://{common.HOST}:{PROMETHEUS_PORT}/metrics"
        traces = f"http://{common.HOST}:{PORTS['otlp_http']}/v1/traces"
        sent = 0
        try:
            deadline = time.monotonic() + seconds
            window_start = None
            while time.monotonic() < deadline:
                started = time.monotonic()
                for i in range(instances):
                    for body in requests_for(i, routes, statuses, time.time_ns()):
                        post(traces, body)
                sent += routes * statuses * instances
                # The last half of the step is the measured window: the series exist by then.
                if window_start is None and time.monotonic() > deadline - seconds / 2:
                    text = get_text(prom_metrics)
                    window_start = (time.monotonic(), sample(text, "prometheus_tsdb_head_samples_appended_total"),
                                    common.cpu_seconds(prometheus.pid))
                time.sleep(max(0.0, every - (time.monotonic() - started)))
            time.sleep(2 * every + 1)  # a last flush of the connector and a scrape of it
            text = get_text(prom_metrics)
            t1, cpu1 = time.monotonic(), common.cpu_seconds(prometheus.pid)
            t0, samples0, cpu0 = window_start or (t1, 0.0, cpu1)
            exposition = get_text(f"http://{common.HOST}:{PORTS['prometheus']}/metrics").splitlines()
            series = [line for line in exposition if SPAN_METRIC.match(line)]
            telemetry = get_text(f"http://{common.HOST}:{PORTS['telemetry']}/metrics")
            span_series = self.query('count({__name__=~"traces_span_metrics_.+"})')
            return Row(
                routes=routes, statuses=statuses, instances=instances, combinations=routes * statuses * instances,
                limit=self.limit, spans_sent=sent, collector_series=len(series),
                overflow_series=sum('otel_metric_overflow="true"' in line for line in series),
                prometheus_head_series=int(sample(text, "prometheus_tsdb_head_series")),
                prometheus_span_series=int(span_series),
                prometheus_rss_mib=round(common.rss_mib(prometheus.pid), 1),
                prometheus_heap_mib=round(sample(text, "go_memstats_heap_inuse_bytes") / 2**20, 1),
                prometheus_samples_per_s=round(
                    (sample(text, "prometheus_tsdb_head_samples_appended_total") - samples0) / (t1 - t0), 1)
                if t1 > t0 else 0.0,
                prometheus_cpu_cores=round((cpu1 - cpu0) / (t1 - t0), 3) if t1 > t0 else 0.0,
                collector_rss_mib=round(common.rss_mib(collector.pid), 1),
                collector_heap_mib=round(sample(telemetry, "otelcol_process_runtime_heap_alloc_bytes") / 2**20, 1))
        finally:
            process.terminate(prometheus, 30)
            process.terminate(collector, 30)


def per_thousand(rows: list[Row]) -> dict[str, float]:
    """Memory per thousand series over the baseline (the first step), from the largest step."""
    base, top = rows[0], max(rows, key=lambda r: r.prometheus_head_series)
    grown = top.prometheus_head_series - base.prometheus_head_series
    if grown <= 0:
        return {}
    return {"prometheus_mib_per_1k_series": round(1000 * (top.prometheus_rss_mib - base.prometheus_rss_mib) / grown, 2),
            "prometheus_heap_mib_per_1k_series": round(
                1000 * (top.prometheus_heap_mib - base.prometheus_heap_mib) / grown, 2),
            "collector_mib_per_1k_series": round(
                1000 * (top.collector_rss_mib - base.collector_rss_mib)
                / max(1, top.collector_series - base.collector_series), 2)}


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", default="1x1x1,10x4x1,50x4x2,100x4x4,250x4x4,250x4x8,600x4x2",
                   help="routes x statuses x instances per step, comma-separated; the first is the baseline")
    p.add_argument("--seconds", type=float, default=30, help="spans sent per step, every scrape interval")
    p.add_argument("--limit", type=int, default=2000, help="span_metrics aggregation_cardinality_limit")
    p.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = p.parse_args(argv)
    steps = [parse_step(s) for s in args.steps.split(",")]

    work = Path(tempfile.mkdtemp(prefix="hitl-cardinality-bench-"))
    bench = CardinalityBench(work, args.limit)
    rows: list[Row] = []
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        bench.pipeline.start_jaeger()
        for routes, statuses, instances in steps:
            row = bench.measure(routes, statuses, instances, args.seconds)
            rows.append(row)
            common.record(row, args.out, kind="cardinality", run=run)
    finally:
        bench.pipeline.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| routes x statuses x instances | combinations | collector series (overflow) | Prometheus head series "
          "| Prometheus RSS / heap (MiB) | samples/s | Prometheus CPU | collector RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.routes} x {r.statuses} x {r.instances} | {r.combinations} | {r.collector_series} "
              f"({r.overflow_series}) | {r.prometheus_head_series} | {r.prometheus_rss_mib:g} / "
              f"{r.prometheus_heap_mib:g} | {r.prometheus_samples_per_s:g} | {r.prometheus_cpu_cores:.3f} | "
              f"{r.collector_rss_mib:g} |")
    for k, v in per_thousand(rows).items():
        print(f"{k}: {v}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
