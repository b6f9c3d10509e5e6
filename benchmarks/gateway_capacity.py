"""How many spans per second one gateway collector carries, and at what CPU and memory.

    python -m benchmarks.gateway_capacity [--rates 2000,5000,10000,20000,30000] [--seconds 30]
                                          [--soak 600 --soak-rate 10000] [--alone] [--out results.jsonl]

Two collectors, the same binary (otelcol-hitl, built by stack/build.sh), measured in turns at each
offered rate in one run, so the machine's noise hits both alike:

- `full`: the gateway's own config (otel-collector/config.yaml): memory_limiter, credential and
  URL scrubbing, redaction with HMAC, span_metrics with exemplars (the Prometheus exporter holds
  the series), disk queue with batching to a real Jaeger (Badger on disk);
- `passthrough`: the baseline, OTLP in -> batch -> OTLP/HTTP to the same Jaeger, in-memory queue.

The load is telemetrygen (built at the collector's release), one trace = one client span plus
`--child-spans` server spans, each carrying this service's attributes at their real sizes (an
HTTP route and method, a status, an SQL text of ~300 characters, a user agent): see SPAN_ATTRIBUTES.
A fresh collector per measurement; its CPU is read from /proc (user + system), its RSS sampled
every second, and what it accepted, refused and failed to export from its own metrics.

Reported per (variant, rate): spans/s accepted, collector CPU in cores, spans per CPU-second
(what one core carries), peak and final RSS, refused and dropped spans, and Jaeger's CPU for the
spans it stored in the same window (the store's spans per CPU-second). The knee is the highest
rate with nothing refused or dropped and the accepted rate within 5% of the offered one. Results
go to --out (JSON lines, each row with its run's start time) and a table on stdout;
docs/capacity.md records them.

`--alone` measures the gateway on its own: the collector pinned to CPU 1 (one core, as its
Kubernetes limit), the load generator and the next hop pinned to CPU 0, and the next hop a sink
(the same collector binary: OTLP/HTTP in, the debug exporter out) instead of Jaeger, which would
saturate first (about 6,000 spans per core). Its knee is the collector's own.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import plot_capacity
from benchmarks.common import HOST, PORTS, Pipeline, binaries, counters, cpu_seconds, pinned, record, rss_mib
from stack import process

# This service's spans, at their real sizes: a decision's server span and its UPDATE.
SQL = ("UPDATE reviews SET status=%(status)s::reviewstatus, decided_at=%(decided_at)s::TIMESTAMP WITH TIME ZONE, "
       "decision=%(decision)s::decisionkind, reviewer_key_id=%(reviewer_key_id)s::UUID, comment=%(comment)s::VARCHAR, "
       "action_status=%(action_status)s::VARCHAR WHERE reviews.id = %(id_1)s::UUID AND reviews.status = "
       "%(status_1)s::reviewstatus RETURNING reviews.id")
SPAN_ATTRIBUTES = {
    "http.request.method": '"POST"',
    "http.route": '"/api/v1/reviews/{review_id}/decisions"',
    "url.path": '"/api/v1/reviews/7f3c2a4e-9b1d-4c6e-8a2f-5d0e1b3c4a6f/decisions"',
    "http.response.status_code": "201",
    "user_agent.original": '"python-httpx/0.28.1"',
    "db.system.name": '"postgresql"',
    "db.query.text": f'"{SQL}"',
    "hitl.decision": '"approve"',
}


@dataclass
class Measurement:
    variant: str
    offered_spans_per_s: float
    seconds: float
    accepted_spans_per_s: float
    exported_spans_per_s: float
    refused_spans: int
    dropped_spans: int
    cpu_cores: float
    spans_per_cpu_second: float
    rss_peak_mib: float
    rss_end_mib: float
    # The store behind it, in the same window: Jaeger v2 on Badger.
    jaeger_cpu_cores: float = 0.0
    jaeger_spans_per_cpu_second: float = 0.0

    @property
    def clean(self) -> bool:
        return plot_capacity.gateway_ok(asdict(self))


def passthrough_config(path: Path, ports: dict[str, int]) -> None:
    path.write_text(f"""# benchmarks/gateway_capacity.py: the baseline - OTLP in, batch, OTLP/HTTP to Jaeger.
extensions:
  health_check: {{endpoint: "{HOST}:{ports['health']}"}}
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "{HOST}:{ports['otlp_grpc']}"}}
processors:
  batch: {{send_batch_size: 8192, timeout: 1s}}
exporters:
  otlp_http/jaeger:
    traces_endpoint: "http://{HOST}:{ports['jaeger_otlp_http']}/v1/traces"
    sending_queue: {{enabled: true, queue_size: 5000}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp_http/jaeger]}}
  telemetry:
    metrics:
      level: detailed
      readers:
        - pull: {{exporter: {{prometheus: {{host: "{HOST}", port: {ports['telemetry']}}}}}}}
""")


# The full pipeline with one stage left out or changed: a second --config file merged over
# otel-collector/config.yaml (maps merge, lists are replaced), to see what each stage costs.
FULL_PROCESSORS = ["memory_limiter", "attributes/drop-credentials", "transform/scrub-urls", "redaction/pii"]


def _traces(**pipeline) -> dict:
    return {"service": {"pipelines": {"traces": pipeline}}}


STAGE_VARIANTS = {
    "full-no-redaction": _traces(processors=[p for p in FULL_PROCESSORS if p != "redaction/pii"]),
    "full-no-scrub-urls": _traces(processors=[p for p in FULL_PROCESSORS if p != "transform/scrub-urls"]),
    # A connector must be used at both ends: the metrics pipeline loses it too.
    "full-no-span-metrics": {"service": {"pipelines": {
        "traces": {"exporters": ["otlp_http/jaeger"]}, "metrics": {"receivers": ["otlp", "otlp/authenticated"]}}}},
    # Redaction's value patterns skip the SQL text (semantic conventions: instrumentations
    # record db.query.text parameterised or sanitised; this service's SQLAlchemy spans do).
    "full-ignore-sql": {"processors": {"redaction/pii": {"ignored_keys": ["db.query.text"]}}},
}


class GatewayBench(Pipeline):
    """The pipeline with this benchmark's collector variants, under telemetrygen's load."""

    def collector_argv(self, variant: str) -> list[str]:
        if variant == "full":
            return super().collector_argv(variant)
        if variant in STAGE_VARIANTS:
            override = self.work / f"{variant}.yaml"
            override.write_text(json.dumps(STAGE_VARIANTS[variant]))
            return [*super().collector_argv(variant), f"--config=file:{override}"]
        config = self.work / "passthrough.yaml"
        passthrough_config(config, self.ports)
        return [self.bins["otelcol-hitl"], f"--config=file:{config}"]

    def load(self, rate: float, seconds: float, child_spans: int) -> subprocess.Popen:
        # Each worker waits on its own limiter (burst 1) before every span, and every late wake-up
        # is rate lost: at 2,500 spans/s a worker delivered 60-85% of its rate here. At <= 200
        # spans/s (5 ms apart) a timer's lateness is a few percent; the workers are goroutines.
        workers = max(1, math.ceil(rate / 200))
        argv = [self.bins["telemetrygen"], "traces", "--otlp-endpoint", f"{HOST}:{self.ports['otlp_grpc']}",
                "--otlp-insecure", "--service", "hitl-review", "--workers", str(workers),
                "--rate", f"{rate / workers:.3f}", "--duration", f"{seconds}s", "--child-spans", str(child_spans),
                "--span-duration", "12ms", "--otlp-attributes", 'deployment.environment.name="bench"']
        for key, value in SPAN_ATTRIBUTES.items():
            argv += ["--telemetry-attributes", f"{key}={value}"]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.work / "telemetrygen.log", "a"),
                                preexec_fn=pinned(self.other_cpus))

    def measure(self, variant: str, rate: float, seconds: float, child_spans: int, sample_every: float = 1.0,
                on_sample=None) -> Measurement:
        proc = self.start_collector(variant)
        try:
            metrics_url = f"http://{HOST}:{self.ports['telemetry']}/metrics"
            time.sleep(1)
            jaeger0 = cpu_seconds(self.jaeger.pid)
            before, cpu0, t0 = counters(metrics_url), cpu_seconds(proc.pid), time.monotonic()
            gen = self.load(rate, seconds, child_spans)
            peak = 0.0
            while gen.poll() is None:
                peak = max(peak, rss_mib(proc.pid))
                if on_sample:
                    on_sample(time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0, rss_mib(proc.pid))
                time.sleep(sample_every)
            time.sleep(3)  # the last batches leave the queue
            after, cpu1, t1 = counters(metrics_url), cpu_seconds(proc.pid), time.monotonic()
            jaeger_cpu = cpu_seconds(self.jaeger.pid) - jaeger0
            wall = t1 - t0
            d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            accepted = d.get("otelcol_receiver_accepted_spans", 0.0)
            exported = d.get("otelcol_exporter_sent_spans{otlp_http/jaeger}", 0.0)
            dropped = (d.get("otelcol_exporter_send_failed_spans{otlp_http/jaeger}", 0.0)
                       + d.get("otelcol_exporter_enqueue_failed_spans{otlp_http/jaeger}", 0.0))
            cpu = cpu1 - cpu0
            return Measurement(
                variant=variant, offered_spans_per_s=rate, seconds=round(wall, 1),
                accepted_spans_per_s=round(accepted / seconds, 1),
                exported_spans_per_s=round(exported / seconds, 1),
                refused_spans=int(d.get("otelcol_receiver_refused_spans", 0.0)), dropped_spans=int(dropped),
                # Over the load's length: the few seconds around it are nearly idle.
                cpu_cores=round(cpu / seconds, 3), spans_per_cpu_second=round(accepted / cpu, 1) if cpu else 0.0,
                rss_peak_mib=round(max(peak, rss_mib(proc.pid)), 1), rss_end_mib=round(rss_mib(proc.pid), 1),
                jaeger_cpu_cores=round(jaeger_cpu / seconds, 3),
                jaeger_spans_per_cpu_second=round(exported / jaeger_cpu, 1) if jaeger_cpu else 0.0)
        finally:
            process.terminate(proc, 30)


def knee(rows: list[Measurement], variant: str) -> float | None:
    return plot_capacity.knee((r.offered_spans_per_s, r.clean) for r in rows if r.variant == variant)


def main(argv: list[str] | None = None) -> list[Measurement]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="2000,5000,10000,20000,30000", help="offered spans/s, comma-separated")
    p.add_argument("--seconds", type=float, default=30, help="load per measurement")
    p.add_argument("--child-spans", type=int, default=3, help="server spans per trace (plus one client span)")
    p.add_argument("--variants", default="full,passthrough")
    p.add_argument("--soak", type=float, default=0, help="then the full pipeline for this many seconds")
    p.add_argument("--soak-rate", type=float, default=10000)
    p.add_argument("--alone", action="store_true",
                   help="collector on CPU 1, load and a sink (not Jaeger) on CPU 0: the gateway's own knee")
    p.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    variants = args.variants.split(",")

    work = Path(tempfile.mkdtemp(prefix="hitl-gateway-bench-"))
    bench = GatewayBench(binaries(), work, PORTS, alone=args.alone)
    rows: list[Measurement] = []
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kind = "alone" if bench.alone else "step"
    try:
        bench.start_jaeger()
        for i, rate in enumerate(rates):
            # Alternate which variant goes first, so a drift of the machine's speed hits both.
            for variant in (variants if i % 2 == 0 else variants[::-1]):
                row = bench.measure(variant, rate, args.seconds, args.child_spans)
                rows.append(row)
                record(row, args.out, kind=kind, run=run)
        if args.soak:
            samples = []
            soak = bench.measure("full", args.soak_rate, args.soak, args.child_spans, sample_every=10,
                                 on_sample=lambda t, cpu, rss: samples.append((round(t), round(cpu, 1), round(rss, 1))))
            print(json.dumps({"soak": asdict(soak), "samples": samples}), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps({"kind": "soak", "run": run, **asdict(soak), "samples": samples}) + "\n")
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| variant | offered spans/s | accepted spans/s | collector CPU (cores) | spans per CPU-second "
          "| RSS peak / end (MiB) | refused | dropped |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r.variant, r.offered_spans_per_s)):
        print(f"| {r.variant} | {r.offered_spans_per_s:g} | {r.accepted_spans_per_s:g} | {r.cpu_cores:.2f} | "
              f"{r.spans_per_cpu_second:g} | {r.rss_peak_mib:g} / {r.rss_end_mib:g} | {r.refused_spans} | "
              f"{r.dropped_spans} |")
    for variant in variants:
        print(f"knee ({variant}): {knee(rows, variant)} spans/s offered with nothing refused or dropped")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
