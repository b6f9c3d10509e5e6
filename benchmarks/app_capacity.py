"""How many requests per second the review service carries, under open-loop load, with and
without its telemetry, with one process and with two.

    python -m benchmarks.app_capacity --database-url postgresql://... --redis-url redis://... \
        [--rates 20,40,60,80,100,130,160] [--seconds 20] [--variants on-1,off-1,on-2,off-2] [--out F]

Open loop: vegeta (pinned in versions.env, built by stack/build.sh) sends at a constant arrival
rate whatever the server does, so a slow server meets a growing queue - the latency a user sees
at that rate - instead of a closed loop that waits for each answer and so slows its own offered
rate down (coordinated omission). Locust would spend a core of this 2-core machine generating the
load in Python; wrk is closed-loop.

The mix per 20 requests, what the simulator's pipeline and reviewers do: 6 list (GET
/api/v1/reviews, newest first, 20 per page), 6 get (one review), 3 submit (a new APV), 3 decide
(approve/reject/modify/escalate a pending review, each review once), 2 stats. Every measurement
gets a fresh PostgreSQL database (a growing table would slow the later steps), seeded with the
reviews its gets and decisions need, Redis as the cache, and the real collector with the gateway's
full pipeline (otel-collector/config.yaml) exporting to a real Jaeger and a real VictoriaLogs.

Variants: `on-N` is N app processes (uvicorn, one worker each; 2 = the two cores, targets
alternated between them) exporting every span, metric and log through the collector; `off-N` the
same with OTEL_SDK_DISABLED=true; a suffix `-unbounded` turns the admission control off
(APP_MAX_IN_FLIGHT=0, app/admission.py), e.g. `on-1-unbounded`. At each rate the variants run in turns (order alternated), after
a warm-up (3 s) at the same rate. Reported per (variant, rate): achieved rate, p50/p95/p99/max
latency, error ratio (any status >= 400 or no answer within 10 s), the app processes' CPU in cores
and per request, the collector's CPU. The knee is the highest rate with p95 under the 500 ms SLO
and no error (thresholds.yaml `latency_slo`).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.auth.models import Role
from benchmarks import common, plot_capacity
from harness.app_process import AppProcess
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.factories import decision_body, review_body
from stack import process

REPO = Path(__file__).resolve().parents[1]
MIX = [("list", 6), ("get", 6), ("submit", 3), ("decide", 3), ("stats", 2)]
SLO_P95_SECONDS = 0.5
VL_PORT = common.PORTS["victorialogs"]


@dataclass
class Step:
    variant: str
    processes: int
    telemetry: bool
    offered_rps: float
    achieved_rps: float
    requests: int
    errors: int
    error_ratio: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    app_cpu_cores: float
    app_cpu_ms_per_request: float
    collector_cpu_cores: float
    # Spans the collector accepted during the measurement (0 with telemetry off).
    collector_spans: int
    status_codes: dict

    @property
    def within_slo(self) -> bool:
        return self.errors == 0 and self.p95_ms < SLO_P95_SECONDS * 1000


def target(method: str, url: str, key: str, body: dict | None = None) -> str:
    t = {"method": method, "url": url, "header": {"X-API-Key": [key]}}
    if body is not None:
        t["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        t["header"]["Content-Type"] = ["application/json"]
    return json.dumps(t)


class Measurement:
    """One (variant, rate): fresh database, N app processes, seeded reviews, the targets file."""

    def __init__(self, bench: "AppBench", processes: int, telemetry: bool, rate: float, seconds: float,
                 bounded: bool = True):
        self.bench, self.rate, self.seconds = bench, rate, seconds
        self.db = fresh_postgres_database(bench.database_url)
        keys = migrated_with_keys(self.db, {"pipeline": Role.pipeline, "reviewer": Role.reviewer})
        self.pipeline, self.reviewer = keys["pipeline"], keys["reviewer"]
        env = {"DATABASE_URL": self.db, "REDIS_URL": bench.redis_url, "APP_ENV": "test"}
        if not bounded:
            env["APP_MAX_IN_FLIGHT"] = "0"  # no admission control (app/admission.py)
        if telemetry:
            env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{common.HOST}:{common.PORTS['otlp_grpc']}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "hitl-review",
                    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=bench"}
        else:
            env["OTEL_SDK_DISABLED"] = "true"
        self.apps = [AppProcess(env=env, log_path=bench.work / f"app-{i}.log") for i in range(processes)]

    def seed(self, total: int) -> tuple[list[str], list[str]]:
        """Reviews for the gets and, one per decision, pending ones for the decides."""
        decides = int(total * dict(MIX)["decide"] / sum(n for _, n in MIX)) + 5
        with httpx.Client(base_url=self.apps[0].url, timeout=30, headers={"X-API-Key": self.pipeline}) as c:
            ids = [c.post("/api/v1/reviews", json=review_body()).raise_for_status().json()["id"]
                   for _ in range(decides + 20)]
        return ids[:20], ids[20:]

    def targets(self, count: int, gets: list[str], pending: list[str]) -> Path:
        """`count` requests in the mix, spread over the processes in turn, each decide on its own review."""
        kinds = [k for k, n in MIX for _ in range(n)]
        rng = random.Random(7)
        rng.shuffle(kinds)
        bases = itertools.cycle([a.url for a in self.apps])
        to_decide = iter(pending)
        decisions = itertools.cycle(["approve", "reject", "modify", "escalate"])
        lines = []
        for kind in itertools.islice(itertools.cycle(kinds), count):
            base = next(bases)
            if kind == "list":
                lines.append(target("GET", f"{base}/api/v1/reviews?limit=20", self.reviewer))
            elif kind == "get":
                lines.append(target("GET", f"{base}/api/v1/reviews/{rng.choice(gets)}", self.reviewer))
            elif kind == "submit":
                lines.append(target("POST", f"{base}/api/v1/reviews", self.pipeline, review_body()))
            elif kind == "decide":
                review = next(to_decide)
                lines.append(target("POST", f"{base}/api/v1/reviews/{review}/decisions", self.reviewer,
                                    decision_body(next(decisions))))
            else:
                lines.append(target("GET", f"{base}/api/v1/stats", self.reviewer))
        path = self.bench.work / "targets.jsonl"
        path.write_text("\n".join(lines) + "\n")
        return path

    def attack(self, targets: Path, seconds: float) -> dict:
        vegeta = self.bench.bins["vegeta"]
        attack = subprocess.Popen([vegeta, "attack", "-format=json", f"-targets={targets}", f"-rate={self.rate:g}/s",
                                   f"-duration={seconds:g}s", "-timeout=10s", "-keepalive=true"],
                                  stdout=subprocess.PIPE, stderr=open(self.bench.work / "vegeta.log", "a"))
        report = subprocess.run([vegeta, "report", "-type=json"], stdin=attack.stdout, capture_output=True, text=True,
                                check=True).stdout
        attack.wait()
        return json.loads(report)

    def close(self) -> None:
        for app in self.apps:
            app.stop()
        import psycopg
        name = self.db.rsplit("/", 1)[1]
        with psycopg.connect(self.bench.database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AppBench:
    def __init__(self, database_url: str, redis_url: str, work: Path):
        self.database_url, self.redis_url, self.work = database_url, redis_url, work
        self.bins = common.binaries("otelcol-hitl", "jaeger", "victoria-logs", "vegeta")
        self.pipeline = common.Pipeline(self.bins, work, common.PORTS)
        self.victorialogs: subprocess.Popen | None = None
        self.collector: subprocess.Popen | None = None

    def start(self) -> None:
        self.pipeline.start_jaeger()
        self.victorialogs = subprocess.Popen(
            [self.bins["victoria-logs"], f"-httpListenAddr={common.HOST}:{VL_PORT}",
             f"-storageDataPath={self.work / 'victorialogs'}", "-loggerLevel=WARN"],
            stdout=open(self.work / "victorialogs.log", "w"), stderr=subprocess.STDOUT)
        common.wait_http(f"http://{common.HOST}:{VL_PORT}/health")
        self.collector = self.pipeline.start_collector("full", {
            "OTELCOL_VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://{common.HOST}:{VL_PORT}/insert/opentelemetry/v1/logs"})

    def measure(self, variant: str, rate: float, seconds: float, warmup: float = 3.0) -> Step:
        on_off, processes, *flags = variant.split("-")
        m = Measurement(self, int(processes), on_off == "on", rate, seconds, bounded="unbounded" not in flags)
        try:
            total = int(rate * (seconds + warmup)) + 10
            gets, pending = m.seed(total)
            path = m.targets(total, gets, pending)
            # Warm-up and measurement read one targets file: vegeta goes through it in order, so
            # the measured attack starts again at its top; split it so no decision repeats.
            lines = path.read_text().splitlines()
            cut = int(rate * warmup)
            warm, measured = self.work / "warm.jsonl", self.work / "measured.jsonl"
            warm.write_text("\n".join(lines[:cut]) + "\n")
            measured.write_text("\n".join(lines[cut:]) + "\n")
            m.attack(warm, warmup)
            cpu0 = [common.cpu_seconds(a.proc.pid) for a in m.apps]
            col0 = common.cpu_seconds(self.collector.pid)
            metrics = f"http://{common.HOST}:{common.PORTS['telemetry']}/metrics"
            spans0 = common.counters(metrics).get("otelcol_receiver_accepted_spans", 0.0)
            t0 = time.monotonic()
            report = m.attack(measured, seconds)
            wall = time.monotonic() - t0
            app_cpu = sum(common.cpu_seconds(a.proc.pid) for a in m.apps) - sum(cpu0)
            col_cpu = common.cpu_seconds(self.collector.pid) - col0
            time.sleep(1.5)  # the apps' span batches (1 s) reach the collector
            spans = common.counters(metrics).get("otelcol_receiver_accepted_spans", 0.0) - spans0
        finally:
            m.close()
        codes = {str(k): v for k, v in report.get("status_codes", {}).items()}
        requests = report["requests"]
        errors = sum(v for k, v in codes.items() if not k.startswith("2"))
        lat = report["latencies"]
        return Step(variant=variant, processes=int(processes), telemetry=on_off == "on", offered_rps=rate,
                    achieved_rps=round(report.get("throughput", 0.0), 1), requests=requests, errors=errors,
                    error_ratio=round(errors / requests, 4) if requests else 1.0,
                    p50_ms=round(lat["50th"] / 1e6, 1), p95_ms=round(lat["95th"] / 1e6, 1),
                    p99_ms=round(lat["99th"] / 1e6, 1), max_ms=round(lat["max"] / 1e6, 1),
                    app_cpu_cores=round(app_cpu / wall, 3),
                    app_cpu_ms_per_request=round(1000 * app_cpu / requests, 2) if requests else 0.0,
                    collector_cpu_cores=round(col_cpu / wall, 3), collector_spans=int(spans), status_codes=codes)

    def stop(self) -> None:
        for proc in (self.collector, self.victorialogs):
            if proc:
                process.terminate(proc, 30)
        self.pipeline.stop()


def knee(rows: list[Step], variant: str) -> float | None:
    """The highest offered rate within the SLO with every lower step within it too."""
    return plot_capacity.knee((r.offered_rps, r.within_slo) for r in rows if r.variant == variant)


def main(argv: list[str] | None = None) -> list[Step]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", default=os.environ.get("TEST_POSTGRES_URL"),
                   help="PostgreSQL admin URL (a fresh database per measurement); default $TEST_POSTGRES_URL")
    p.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL"), help="default $TEST_REDIS_URL")
    p.add_argument("--rates", default="20,40,60,80,100,130,160", help="offered requests/s, comma-separated")
    p.add_argument("--seconds", type=float, default=20, help="measured load per step (after a 3 s warm-up)")
    p.add_argument("--warmup", type=float, default=3, help="seconds at the step's rate before measuring")
    p.add_argument("--variants", default="on-1,off-1,on-2,off-2")
    p.add_argument("--out", type=Path, help="append the results here (JSON lines)")
    args = p.parse_args(argv)
    if not args.database_url or not args.redis_url:
        p.error("--database-url and --redis-url (or TEST_POSTGRES_URL / TEST_REDIS_URL) are required")
    rates = [float(r) for r in args.rates.split(",")]
    variants = args.variants.split(",")

    work = Path(tempfile.mkdtemp(prefix="hitl-app-bench-"))
    bench = AppBench(args.database_url, args.redis_url, work)
    rows: list[Step] = []
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        bench.start()
        for i, rate in enumerate(rates):
            for variant in (variants if i % 2 == 0 else variants[::-1]):
                row = bench.measure(variant, rate, args.seconds, args.warmup)
                rows.append(row)
                common.record(row, args.out, run=run)
    finally:
        bench.stop()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| variant | offered req/s | achieved | p50 / p95 / p99 ms | errors | app CPU (cores) | app CPU ms/request "
          "| collector CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(rows, key=lambda r: (r.variant, r.offered_rps)):
        print(f"| {r.variant} | {r.offered_rps:g} | {r.achieved_rps:g} | {r.p50_ms:g} / {r.p95_ms:g} / {r.p99_ms:g} | "
              f"{r.errors} | {r.app_cpu_cores:.2f} | {r.app_cpu_ms_per_request:g} | {r.collector_cpu_cores:.2f} |")
    knees = {v: knee(rows, v) for v in variants}
    for v, k in knees.items():
        print(f"knee ({v}): {k} req/s offered with p95 < {SLO_P95_SECONDS * 1000:.0f} ms and no error")
    for n in sorted({v.split('-')[1] for v in variants}):
        on, off = knees.get(f"on-{n}"), knees.get(f"off-{n}")
        if on and off:
            print(f"knee ratio, telemetry on / off, {n} process(es): {on / off:.2f}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
