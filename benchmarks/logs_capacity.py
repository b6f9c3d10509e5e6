"""How many log records per second VictoriaLogs stores per core, straight and behind the gateway.

    python -m benchmarks.logs_capacity [--rates 2000,5000,10000,20000] [--seconds 20] [--out results.jsonl]

VictoriaLogs (the pinned binary, with the stack's flags from victorialogs/victoria-logs.flags and a
fresh data directory per measurement) takes this service's log records - a line of
app.reviews.service with its code location, review and trace ids, at their real sizes - from
telemetrygen at a constant rate, in two ways measured in turns at each rate:

- `direct`: OTLP/HTTP in batches of 200 to VictoriaLogs' OpenTelemetry endpoint, what its own
  cost per record is;
- `gateway`: OTLP/gRPC into the gateway's full logs pipeline (otel-collector/config.yaml:
  memory_limiter, credential and URL scrubbing, redaction, the disk queue) and on to the same
  VictoriaLogs, what the collector adds.

Reported per (variant, rate): records/s VictoriaLogs stored (vl_rows_ingested_total), its CPU in
cores and records per CPU-second, its RSS, the collector's CPU and records per CPU-second
(gateway), and whether all that was sent arrived.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common
from stack import process
from stack.ports import benchmark_ports
from stack.services import victorialogs_flags

REPO = Path(__file__).resolve().parents[1]
PORTS = benchmark_ports("logs_capacity")
VL_PORT = PORTS["victorialogs"]
# One of this service's log records (app/reviews/service.py "decision recorded"), as the OTel
# logging handler exports it: its code location and the request's ids.
BODY = "decision recorded"
LOG_ATTRIBUTES = {
    "code.file.path": '"/srv/app/app/reviews/service.py"',
    "code.function.name": '"decide"',
    "code.line.number": "212",
    "logger.name": '"app.reviews.service"',
    "hitl.review_id": '"7f3c2a4e-9b1d-4c6e-8a2f-5d0e1b3c4a6f"',
    "hitl.decision": '"approve"',
    "hitl.action_status": '"pending"',
}
TRACE_ID, SPAN_ID = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


@dataclass
class Measurement:
    variant: str
    offered_records_per_s: float
    seconds: float
    stored_records_per_s: float
    sent_records: int
    lost_records: int
    victorialogs_cpu_cores: float
    victorialogs_records_per_cpu_second: float
    victorialogs_rss_mib: float
    collector_cpu_cores: float = 0.0
    collector_records_per_cpu_second: float = 0.0


def rows_ingested(port: int) -> float:
    with urllib.request.urlopen(f"http://{common.HOST}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m[1]) for m in re.finditer(r"^vl_rows_ingested_total(?:\{[^}]*\})? ([0-9.eE+-]+)", text, re.M))


class LogsBench:
    def __init__(self, work: Path):
        self.work = work
        self.bins = common.binaries("otelcol-hitl", "victoria-logs", "telemetrygen")
        self.pipeline = common.Pipeline(self.bins, work, PORTS)

    def start_victorialogs(self) -> subprocess.Popen:
        data = self.work / "victorialogs"
        shutil.rmtree(data, ignore_errors=True)
        proc = subprocess.Popen([self.bins["victoria-logs"], f"-httpListenAddr={common.HOST}:{VL_PORT}",
                                 f"-storageDataPath={data}", "-loggerLevel=WARN", *victorialogs_flags()],
                                stdout=open(self.work / "victorialogs.log", "a"), stderr=subprocess.STDOUT)
        common.wait_http(f"http://{common.HOST}:{VL_PORT}/health")
        return proc

    def load(self, variant: str, rate: float, seconds: float) -> subprocess.Popen:
        workers = max(1, math.ceil(rate / 200))  # see gateway_capacity.GatewayBench.load
        argv = [self.bins["telemetrygen"], "logs", "--workers", str(workers), "--rate", f"{rate / workers:.3f}",
                "--duration", f"{seconds:g}s", "--service", "hitl-review", "--body", BODY, "--severity-text", "INFO",
                "--severity-number", "9", "--trace-id", TRACE_ID, "--span-id", SPAN_ID,
                "--otlp-attributes", 'deployment.environment.name="bench"']
        if variant == "direct":
            argv += ["--otlp-http", "--otlp-endpoint", f"{common.HOST}:{VL_PORT}", "--otlp-insecure",
                     "--otlp-http-url-path", "/insert/opentelemetry/v1/logs", "--batch", "--batch-size", "200"]
        else:
            argv += ["--otlp-endpoint", f"{common.HOST}:{PORTS['otlp_grpc']}", "--otlp-insecure"]
        for key, value in LOG_ATTRIBUTES.items():
            argv += ["--telemetry-attributes", f"{key}={value}"]
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.work / "telemetrygen.log", "w"))

    def generated(self) -> int:
        """The records telemetrygen's workers say they generated (its last run's log)."""
        text = (self.work / "telemetrygen.log").read_text()
        return sum(int(n) for n in re.findall(r'"logs": (\d+)', text))

    def measure(self, variant: str, rate: float, seconds: float) -> Measurement:
        vl = self.start_victorialogs()
        collector = None
        try:
            if variant == "gateway":
                collector = self.pipeline.start_collector("full", {
                    "OTELCOL_VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://{common.HOST}:{VL_PORT}/insert/opentelemetry/v1/logs"})
            time.sleep(1)
            rows0, vl0 = rows_ingested(VL_PORT), common.cpu_seconds(vl.pid)
            col0 = common.cpu_seconds(collector.pid) if collector else 0.0
            gen = self.load(variant, rate, seconds)
            gen.wait(seconds + 60)
            # What is queued reaches the store: wait until the count stops growing.
            stored, last = rows_ingested(VL_PORT) - rows0, -1.0
            while stored != last:
                time.sleep(2)
                last, stored = stored, rows_ingested(VL_PORT) - rows0
            vl_cpu = common.cpu_seconds(vl.pid) - vl0
            col_cpu = common.cpu_seconds(collector.pid) - col0 if collector else 0.0
            sent = self.generated()
            return Measurement(
                variant=variant, offered_records_per_s=rate, seconds=seconds,
                stored_records_per_s=round(stored / seconds, 1), sent_records=sent, lost_records=max(0, int(sent - stored)),
                victorialogs_cpu_cores=round(vl_cpu / seconds, 3),
                victorialogs_records_per_cpu_second=round(stored / vl_cpu, 1) if vl_cpu else 0.0,
                victorialogs_rss_mib=round(common.rss_mib(vl.pid), 1),
                collector_cpu_cores=round(col_cpu / seconds, 3),
                collector_records_per_cpu_second=round(stored / col_cpu, 1) if col_cpu else 0.0)
        finally:
            if collector:
                process.terminate(collector, 30)
            process.terminate(vl, 30)


def main(argv: list[str] | None = None) -> list[Measurement]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="2000,5000,10000,20000", help="offered records/s, comma-separated")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--variants", default="direct,gateway")
    p.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = p.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    variants = args.variants.split(",")

    work = Path(tempfile.mkdtemp(prefix="hitl-logs-bench-"))
    bench = LogsBench(work)
    rows: list[Measurement] = []
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        for i, rate in enumerate(rates):
            for variant in (variants if i % 2 == 0 else variants[::-1]):
                row = bench.measure(variant, rate, args.seconds)
                rows.append(row)
                common.record(row, args.out, kind="logs", run=run)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("\n| variant | offered records/s | stored records/s | VictoriaLogs CPU (cores) | records per VL CPU-second "
          "| VL RSS (MiB) | collector CPU | records per collector CPU-second |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r.variant, r.offered_records_per_s)):
        print(f"| {r.variant} | {r.offered_records_per_s:g} | {r.stored_records_per_s:g} | "
              f"{r.victorialogs_cpu_cores:.3f} | {r.victorialogs_records_per_cpu_second:g} | "
              f"{r.victorialogs_rss_mib:g} | {r.collector_cpu_cores:.3f} | {r.collector_records_per_cpu_second:g} |")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
