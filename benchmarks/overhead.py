"""Telemetry overhead benchmark: the same service with telemetry exported over OTLP to a real
receiver, and with OTEL_SDK_DISABLED=true, measured side by side in alternating rounds.

For each of list, get and decide it reports requests/s, client-side p50/p95/p99 and the
server process's CPU per request (user+system from /proc, so the client's and the
receiver's CPU are not counted), then the extra CPU per request that telemetry costs.

    python -m benchmarks.overhead --database-url postgresql://... [--receiver-endpoint URL]

Without --receiver-endpoint it starts the test suite's OTLP/gRPC receiver in-process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.auth.models import Role  # noqa: E402
from app.auth.service import create_key  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.app_process import AppProcess  # noqa: E402
from tests.support.factories import decision_body, review_body  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Variant:
    def __init__(self, name: str, env: dict, database_url: str, workdir: Path):
        self.name = name
        upgrade(database_url)
        db = Database(Settings(DATABASE_URL=database_url))
        with db.sessionmaker() as session:
            self.pipeline = {"X-API-Key": create_key(session=session, name="bench-pipeline", role=Role.pipeline)[1]}
            self.reviewer = {"X-API-Key": create_key(session=session, name="bench-reviewer", role=Role.reviewer)[1]}
        db.engine.dispose()
        self.app = AppProcess(
            env={"DATABASE_URL": database_url, "ACTION_RETRY_ENABLED": "false", **env},
            log_path=workdir / f"{name}.log",
        )
        self.client = httpx.Client(base_url=self.app.url, timeout=30)
        self.results: dict[str, dict[str, list]] = {}

    def seed(self, n: int) -> list[str]:
        return [
            self.client.post("/api/v1/reviews", json=review_body(), headers=self.pipeline).json()["id"]
            for _ in range(n)
        ]

    def measure(self, endpoint: str, requests: list) -> None:
        latencies = []
        cpu0, t0 = cpu_seconds(self.app.proc.pid), time.perf_counter()
        for method, url, kw in requests:
            start = time.perf_counter()
            r = self.client.request(method, url, **kw)
            latencies.append(time.perf_counter() - start)
            if r.status_code >= 400:
                raise RuntimeError(f"{self.name} {endpoint}: {r.status_code} {r.text[:200]}")
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(self.app.proc.pid) - cpu0
        acc = self.results.setdefault(endpoint, {"latency": [], "cpu": 0.0, "wall": 0.0, "n": 0, "rounds": []})
        acc["latency"] += latencies
        acc["cpu"] += cpu
        acc["wall"] += wall
        acc["n"] += len(requests)
        acc["rounds"].append(cpu / len(requests) * 1000)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_POSTGRES_URL"), required=False)
    parser.add_argument("--receiver-endpoint", help="OTLP gRPC endpoint of a running receiver (e.g. the collector)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--fastapi-native", action="store_true",
                        help="also measure FastAPI's built-in server spans instead of the contrib instrumentation")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also measure telemetry with these settings changed "
                             "(e.g. default-gc:GC_GEN0_THRESHOLD=0); repeatable")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint per round")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (PostgreSQL admin URL) or TEST_POSTGRES_URL is required")

    sink = None
    endpoint = args.receiver_endpoint
    if not endpoint:
        from tests.support.otlp_sink import OtlpSink

        sink = OtlpSink()
        endpoint = sink.endpoint
    workdir = Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    otel_on = {
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    variants = [
        Variant("telemetry", otel_on, fresh_postgres_database(args.database_url), workdir),
        Variant("disabled", {"OTEL_SDK_DISABLED": "true"}, fresh_postgres_database(args.database_url), workdir),
    ]
    if args.fastapi_native:
        variants.append(Variant("fastapi-native", otel_on | {"HITL_HTTP_INSTRUMENTATION": "fastapi"},
                                fresh_postgres_database(args.database_url), workdir))
    for spec in args.variant:
        name, _, assignments = spec.partition(":")
        overrides = dict(a.split("=", 1) for a in assignments.split(",") if a)
        variants.append(Variant(name, otel_on | overrides, fresh_postgres_database(args.database_url), workdir))
    try:
        for v in variants:  # warm-up: connections, caches, code paths
            ids = v.seed(50)
            v.client.get("/api/v1/reviews", headers=v.reviewer)
            for i in ids[:20]:
                v.client.get(f"/api/v1/reviews/{i}", headers=v.reviewer)
        for rnd in range(args.rounds):
            order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
            for v in order:
                ids = v.seed(args.requests)
                v.measure("list", [("GET", "/api/v1/reviews", {"params": {"limit": 20}, "headers": v.reviewer})] * args.requests)
                v.measure("get", [("GET", f"/api/v1/reviews/{i}", {"headers": v.reviewer}) for i in ids])
                v.measure("decide", [
                    ("POST", f"/api/v1/reviews/{i}/decisions", {"json": decision_body("approve"), "headers": v.reviewer})
                    for i in ids
                ])
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for v in variants:
            v.app.stop()
        if sink:
            print(f"receiver got {len(sink.spans)} spans", file=sys.stderr)
            sink.stop()

    print(f"\n{args.rounds} alternating rounds x {args.requests} requests per endpoint, sequential, keep-alive; "
          f"server CPU from /proc (user+system)\n")
    print("| endpoint | variant | req/s | p50 ms | p95 ms | p99 ms | CPU ms/req |")
    print("|---|---|---:|---:|---:|---:|---:|")
    cpu = {}
    for endpoint in ("list", "get", "decide"):
        for v in variants:
            r = v.results[endpoint]
            lat = r["latency"]
            cpu[(endpoint, v.name)] = r["cpu"] / r["n"] * 1000
            print(f"| {endpoint} | {v.name} | {r['n'] / r['wall']:.0f} | {statistics.median(lat) * 1000:.2f} | "
                  f"{percentile(lat, 0.95) * 1000:.2f} | {percentile(lat, 0.99) * 1000:.2f} | {cpu[(endpoint, v.name)]:.3f} |")
    # Per round, both variants ran back to back: the difference within a round is less exposed to
    # the machine's slow drift than the difference of totals; the median drops a disturbed round.
    print("\n| endpoint | variant | extra CPU ms/req (totals) | ratio | extra CPU ms/req, median of rounds | per round |")
    print("|---|---|---:|---:|---:|---|")
    for endpoint in ("list", "get", "decide"):
        off = cpu[(endpoint, "disabled")]
        base_rounds = variants[1].results[endpoint]["rounds"]
        for v in variants:
            if v.name != "disabled":
                on = cpu[(endpoint, v.name)]
                diffs = [a - b for a, b in zip(v.results[endpoint]["rounds"], base_rounds)]
                print(f"| {endpoint} | {v.name} | {on - off:.3f} | {on / off:.2f}x | {statistics.median(diffs):.3f} | "
                      f"{' '.join(f'{d:+.2f}' for d in diffs)} |")


if __name__ == "__main__":
    main()
