"""What the benchmarks share: stack/build.sh's binaries, readings of a running process (CPU, RSS,
a collector's own counters), results as JSON lines, and the telemetry pipeline they put load on -
Jaeger and one collector at a time, each benchmark on its own block of ports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from stack import process
from stack.ports import HOST, benchmark_ports

REPO = Path(__file__).resolve().parents[1]
# The gateway and app capacity benchmarks' block (the others name theirs).
PORTS = benchmark_ports("gateway_capacity")
TICKS = os.sysconf("SC_CLK_TCK")


def binaries(*names: str) -> dict[str, str]:
    """Builds (or finds cached) stack/build.sh targets: name -> path of the binary."""
    names = names or ("otelcol-hitl", "jaeger", "telemetrygen")
    subprocess.run(["bash", "stack/build.sh", *names], cwd=REPO, check=True)
    out = subprocess.run(["bash", "stack/build.sh", "--paths", *names], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def record(row, out: Path | None, **fields) -> None:
    """One measurement: a JSON line on stdout and, with --out, appended to the results file
    (with `fields` first: the kind of row, the run's start time)."""
    print(json.dumps(asdict(row)), flush=True)
    if out:
        with out.open("a") as f:
            f.write(json.dumps({**fields, **asdict(row)}) + "\n")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)")


def counters(url: str) -> dict[str, float]:
    """Each otelcol_* sample of the collector's own metrics, keyed `name` (summed over its labels)
    and `name{exporter}` for per-exporter series."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not (m and m[1].startswith("otelcol_") and m[3] != "NaN"):
            continue
        out[m[1]] = out.get(m[1], 0.0) + float(m[3])
        exporter = re.search(r'exporter="([^"]+)"', m[2] or "")
        if exporter:
            key = f"{m[1]}{{{exporter[1]}}}"
            out[key] = out.get(key, 0.0) + float(m[3])
    return out


def sink_config(path: Path, ports: dict[str, int]) -> None:
    """--alone: the next hop, on Jaeger's addresses, that only counts what it receives."""
    path.write_text(f"""# benchmarks/gateway_capacity.py --alone: a sink in Jaeger's place.
extensions:
  health_check: {{endpoint: "{HOST}:{ports['jaeger_health']}", path: /status}}
receivers:
  otlp:
    protocols:
      http: {{endpoint: "{HOST}:{ports['jaeger_otlp_http']}"}}
exporters:
  debug: {{verbosity: basic}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [debug]}}
  telemetry:
    logs: {{level: warn}}
    metrics:
      readers:
        - pull: {{exporter: {{prometheus: {{host: "{HOST}", port: {ports['jaeger_metrics']}}}}}}}
""")


def pinned(cpus: set[int] | None):
    """A preexec_fn that keeps the child on these CPUs (None: wherever the kernel puts it)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Pipeline:
    """Jaeger (or, --alone, a sink in its place) and one collector at a time, on a block of ports
    (`stack.ports.benchmark_ports`) of the benchmark's own."""

    def __init__(self, bins: dict[str, str], work: Path, ports: dict[str, int], alone: bool = False):
        self.bins, self.work, self.ports = bins, work, ports
        self.jaeger: subprocess.Popen | None = None
        # --alone: the measured collector gets CPU 1, everything else CPU 0.
        self.alone = alone and len(os.sched_getaffinity(0)) >= 2
        self.collector_cpus = {1} if self.alone else None
        self.other_cpus = {0} if self.alone else None

    def collector_argv(self, variant: str) -> list[str]:
        """The collector's command line for a variant; here only the gateway's own config (`full`)."""
        return [self.bins["otelcol-hitl"], f"--config=file:{REPO / 'otel-collector' / 'config.yaml'}"]

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}

    def start_jaeger(self) -> None:
        data = self.work / "jaeger"
        env = self.env() | {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"{HOST}:{self.ports['jaeger_otlp_grpc']}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"{HOST}:{self.ports['jaeger_otlp_http']}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"{HOST}:{self.ports['jaeger_query_http']}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"{HOST}:{self.ports['jaeger_query_grpc']}",
            "JAEGER_HEALTH_ENDPOINT": f"{HOST}:{self.ports['jaeger_health']}",
            "JAEGER_TELEMETRY_HOST": HOST, "JAEGER_METRICS_PORT": str(self.ports["jaeger_metrics"]),
            "JAEGER_BADGER_DIR": str(data), "JAEGER_LOG_LEVEL": "warn",
        }
        log = open(self.work / "jaeger.log", "w")
        if self.alone:
            config = self.work / "sink.yaml"
            sink_config(config, self.ports)
            argv = [self.bins["otelcol-hitl"], f"--config=file:{config}"]
        else:
            argv = [self.bins["jaeger"], f"--config=file:{REPO / 'jaeger' / 'config.yaml'}"]
        self.jaeger = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=pinned(self.other_cpus))
        wait_http(f"http://{HOST}:{self.ports['jaeger_health']}/status")

    def start_collector(self, variant: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        storage = self.work / "file_storage"
        shutil.rmtree(storage, ignore_errors=True)
        storage.mkdir()
        token = self.work / "ingest-tokens"
        token.write_text("bench-token-not-a-secret\n")
        argv = self.collector_argv(variant)
        env = self.env() | {
            "OTELCOL_INSTANCE_ID": f"bench-{variant}",
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"{HOST}:{self.ports['otlp_grpc']}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{HOST}:{self.ports['otlp_http']}",
            "OTELCOL_OTLP_AUTH_GRPC_ENDPOINT": f"{HOST}:{self.ports['otlp_auth_grpc']}",
            "OTELCOL_OTLP_AUTH_HTTP_ENDPOINT": f"{HOST}:{self.ports['otlp_auth_http']}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"{HOST}:{self.ports['prometheus']}",
            "OTELCOL_TELEMETRY_HOST": HOST, "OTELCOL_TELEMETRY_PORT": str(self.ports["telemetry"]),
            "OTELCOL_HEALTH_ENDPOINT": f"{HOST}:{self.ports['health']}",
            "OTELCOL_ZPAGES_ENDPOINT": f"{HOST}:{self.ports['zpages']}",
            "OTELCOL_STORAGE_DIR": str(storage), "OTELCOL_INGEST_TOKEN_FILE": str(token),
            "OTELCOL_JAEGER_OTLP_TRACES_ENDPOINT": f"http://{HOST}:{self.ports['jaeger_otlp_http']}/v1/traces",
            # No logs are sent; the logs exporter points nowhere in particular.
            "OTELCOL_VICTORIALOGS_OTLP_LOGS_ENDPOINT": f"http://{HOST}:9/insert/opentelemetry/v1/logs",
            "OTELCOL_LOG_LEVEL": "warn",
        } | (extra_env or {})
        log = open(self.work / f"collector-{variant}.log", "a")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=pinned(self.collector_cpus))
        try:
            wait_http(f"http://{HOST}:{self.ports['health']}/")
            wait_http(f"http://{HOST}:{self.ports['telemetry']}/metrics")
        except OSError:
            process.terminate(proc, 10)
            raise RuntimeError(f"the collector did not start; its log ends:\n{Path(log.name).read_text()[-2000:]}")
        if proc.poll() is not None:  # another process answers on its ports
            raise RuntimeError(f"the collector exited ({proc.returncode}); its log ends:\n"
                               f"{Path(log.name).read_text()[-2000:]}")
        return proc

    def stop(self) -> None:
        if self.jaeger:
            self.jaeger.terminate()
            self.jaeger.wait(30)
