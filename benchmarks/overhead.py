"""Telemetry overhead benchmark: the same service with telemetry exported over OTLP to a real
receiver, and with OTEL_SDK_DISABLED=true, measured side by side in alternating rounds.

For each of list, get and decide it reports requests/s, client-side p50/p95/p99 and the
server process's CPU per request (user+system from /proc, so the client's and the
receiver's CPU are not counted), then the extra CPU per request that telemetry costs.

    python -m benchmarks.overhead --database-url postgresql://... [--receiver-endpoint URL]

Without --receiver-endpoint it starts the project's collector binary (the native stack's build)
with a receive-and-discard pipeline: a real OTLP receiver whose own work stays small, because on
a 2-core machine a full pipeline (span metrics, Jaeger, scrapes) competes with the measured
process for the cores and shows up as noise in its CPU time (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.auth.models import Role
from harness.app_process import AppProcess, free_port
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.factories import decision_body, review_body

CLK_TCK = os.sysconf("SC_CLK_TCK")
_libc = ctypes.CDLL(None, use_errno=True)


def cpu_clock(pid: int) -> int | None:
    """The CPU-time clock of another process (all its threads, nanosecond resolution), if the
    kernel gives one (clock_getcpuclockid(3))."""
    clock_id = ctypes.c_int()
    return clock_id.value if _libc.clock_getcpuclockid(pid, ctypes.byref(clock_id)) == 0 else None


def cpu_seconds(pid: int, clock: int | None = None) -> float:
    """User+system CPU of the process: from its CPU clock, else /proc (10 ms ticks)."""
    if clock is not None:
        return time.clock_gettime_ns(clock) / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


RECEIVER_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch: {{}}
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [debug]}}
    metrics: {{receivers: [otlp], processors: [batch], exporters: [debug]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [debug]}}
"""


def start_collector(workdir: Path) -> tuple[subprocess.Popen, str]:
    """The project's collector build, receiving OTLP/gRPC and discarding it; (process, endpoint)."""
    from stack.cli import binary_paths, build

    if build(["otelcol-hitl"]) != 0:
        raise SystemExit("building the collector failed")
    port = free_port()
    config = workdir / "receiver.yaml"
    config.write_text(RECEIVER_CONFIG.format(port=port))
    proc = subprocess.Popen([binary_paths()["otelcol-hitl"], f"--config={config}"],
                            stdout=open(workdir / "receiver.log", "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the collector exited; see {workdir / 'receiver.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the collector did not listen within 30 s")


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Variant:
    def __init__(self, name: str, env: dict, database_url: str, workdir: Path, module: str = "app"):
        self.name = name
        self.env = env
        keys = migrated_with_keys(database_url, {"bench-pipeline": Role.pipeline, "bench-reviewer": Role.reviewer})
        self.pipeline = {"X-API-Key": keys["bench-pipeline"]}
        self.reviewer = {"X-API-Key": keys["bench-reviewer"]}
        self.app = AppProcess(
            env={"DATABASE_URL": database_url, "ACTION_RETRY_ENABLED": "false", **env},
            log_path=workdir / f"{name}.log",
            module=module,
        )
        self.client = httpx.Client(base_url=self.app.url, timeout=30)
        self.clock = cpu_clock(self.app.proc.pid)
        self.results: dict[str, dict[str, list]] = {}

    def seed(self, n: int) -> list[str]:
        return [
            self.client.post("/api/v1/reviews", json=review_body(), headers=self.pipeline).json()["id"]
            for _ in range(n)
        ]

    def measure(self, endpoint: str, requests: list) -> float:
        """Runs the requests; returns the server CPU they took, in ms per request."""
        latencies = []
        cpu0, t0 = cpu_seconds(self.app.proc.pid, self.clock), time.perf_counter()
        for method, url, kw in requests:
            start = time.perf_counter()
            r = self.client.request(method, url, **kw)
            latencies.append(time.perf_counter() - start)
            if r.status_code >= 400:
                raise RuntimeError(f"{self.name} {endpoint}: {r.status_code} {r.text[:200]}")
        if endpoint == "decide" and "CODE_HOST_URL" in self.env and r.json()["action_status"] == "skipped":
            raise RuntimeError(f"{self.name}: the decision's action was skipped, not sent to the code host")
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(self.app.proc.pid, self.clock) - cpu0
        acc = self.results.setdefault(endpoint, {"latency": [], "cpu": 0.0, "wall": 0.0, "n": 0, "blocks": []})
        acc["latency"] += latencies
        acc["cpu"] += cpu
        acc["wall"] += wall
        acc["n"] += len(requests)
        acc["blocks"].append(cpu / len(requests) * 1000)
        return acc["blocks"][-1]


def requests_for(endpoint: str, v: Variant, review_ids: list[str]) -> list:
    if endpoint == "list":
        return [("GET", "/api/v1/reviews", {"params": {"limit": 20}, "headers": v.reviewer})] * len(review_ids)
    if endpoint == "get":
        return [("GET", f"/api/v1/reviews/{i}", {"headers": v.reviewer}) for i in review_ids]
    return [("POST", f"/api/v1/reviews/{i}/decisions", {"json": decision_body("approve"), "headers": v.reviewer})
            for i in review_ids]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_POSTGRES_URL"), required=False)
    parser.add_argument("--receiver-endpoint",
                        help="OTLP gRPC endpoint of a running receiver (default: start a receive-only collector)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--fastapi-native", action="store_true",
                        help="also measure FastAPI's built-in server spans instead of the contrib instrumentation")
    parser.add_argument("--otel-defaults", action="store_true",
                        help="also measure a default OpenTelemetry set-up of the same service "
                             "(benchmarks/otel_defaults.py): what the tuning in app/telemetry buys")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="also measure telemetry with these settings changed "
                             "(e.g. default-gc:GC_GEN0_THRESHOLD=0); repeatable")
    parser.add_argument("--code-host", action="store_true",
                        help="decisions call a local code-host stand-in (merge over HTTP) instead of "
                             "being recorded as skipped: the full decision path, with its client span")
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint per round")
    parser.add_argument("--block", type=int, default=25, help="requests per turn of a variant")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url (PostgreSQL admin URL) or TEST_POSTGRES_URL is required")

    workdir = Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    receiver = None
    endpoint = args.receiver_endpoint
    if not endpoint:
        receiver, endpoint = start_collector(workdir)
    common: dict[str, str] = {}
    code_host = None
    if args.code_host:
        from harness.code_host import CodeHostServer

        code_host = CodeHostServer()
        common = {"CODE_HOST_URL": code_host.url, "CODE_HOST_TOKEN": "bench-token"}
    otel_on = common | {
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    variants = [
        Variant("telemetry", otel_on, fresh_postgres_database(args.database_url), workdir),
        Variant("disabled", common | {"OTEL_SDK_DISABLED": "true"}, fresh_postgres_database(args.database_url), workdir),
    ]
    if args.fastapi_native:
        variants.append(Variant("fastapi-native", otel_on | {"HITL_HTTP_INSTRUMENTATION": "fastapi"},
                                fresh_postgres_database(args.database_url), workdir))
    if args.otel_defaults:
        variants.append(Variant("otel-defaults", otel_on, fresh_postgres_database(args.database_url), workdir,
                                module="benchmarks.otel_defaults"))
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
        block = 0
        for rnd in range(args.rounds):
            ids = {v.name: v.seed(args.requests) for v in variants}
            for endpoint in ("list", "get", "decide"):
                # Small blocks, variants taking turns (and turns at going first): the machine's
                # speed drifts by tens of percent within seconds here, and both variants should
                # see the same drift.
                for start in range(0, args.requests, args.block):
                    shift = block % len(variants)
                    for v in variants[shift:] + variants[:shift]:
                        chunk = ids[v.name][start:start + args.block]
                        v.measure(endpoint, requests_for(endpoint, v, chunk))
                    block += 1
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for v in variants:
            v.app.stop()
        if receiver:
            receiver.terminate()
            receiver.wait(10)
        if code_host:
            print(f"code host got {len(code_host.calls)} calls", file=sys.stderr)
            code_host.close()

    source = "the process's CPU clock" if variants[0].clock is not None else "/proc (10 ms ticks)"
    print(f"\n{args.rounds} rounds x {args.requests} requests per endpoint and variant, in turns of {args.block}, "
          f"sequential, keep-alive; server CPU (user+system, all threads) from {source}\n")
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
    # Within a turn the variants ran back to back: the median of the per-turn differences drops
    # the turns a burst of other work on the machine disturbed.
    print("\n| endpoint | variant | extra CPU ms/req (totals) | ratio | median of turns | turns above 0.4 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for endpoint in ("list", "get", "decide"):
        off = cpu[(endpoint, "disabled")]
        base_blocks = variants[1].results[endpoint]["blocks"]
        for v in variants:
            if v.name != "disabled":
                on = cpu[(endpoint, v.name)]
                diffs = [a - b for a, b in zip(v.results[endpoint]["blocks"], base_blocks)]
                above = sum(d > 0.4 for d in diffs)
                print(f"| {endpoint} | {v.name} | {on - off:.3f} | {on / off:.2f}x | {statistics.median(diffs):.3f} | "
                      f"{above} of {len(diffs)} |")


if __name__ == "__main__":
    main()
