"""The service's memory while its collector is gone, side by side with a receiver listening.

With nothing listening on the OTLP endpoint the SDK's batch processors keep up to their queue size
(2048 spans, 2048 log records: the SDK defaults) and drop the rest, and the exporters retry. So the
process should grow until those queues are full and then stay flat. This measures it: one process
per variant, each on its own SQLite file, the same closed-loop request sequence (nine
`GET /api/v1/reviews` to one `POST /api/v1/reviews`, so spans and log records both queue), the
resident set sampled every --every requests.

    python -m benchmarks.app_memory [--requests 30000] [--every 2000] [--variant V] [--out docs/capacity/app-memory.jsonl]

Variants: `collector-down` (the endpoint is a port nobody listens on) and `collector-up` (a real
OTLP/gRPC receiver there, harness/otlp_sink.py, in this process: its memory is not the app's).
The telemetry settings are the service's own (no shortened export intervals). Results: a JSON line
per sample on stdout (and appended to --out), then a table of both variants side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from app.auth.models import Role
from benchmarks.common import record
from benchmarks.plot_capacity import memory_table
from harness.app_process import AppProcess, free_port
from harness.databases import migrated_with_keys
from harness.factories import review_body
from harness.otlp_sink import OtlpSink

VARIANTS = ("collector-down", "collector-up")
SUBMIT_EVERY = 10  # one submit in ten requests, the rest lists


@dataclass
class Sample:
    variant: str
    requests: int
    rss_mib: float
    seconds: float


def run_variant(variant: str, requests: int, every: int, work: Path) -> list[Sample]:
    url = f"sqlite:///{work / f'{variant}.db'}"
    keys = migrated_with_keys(url, {"p": Role.pipeline, "v": Role.viewer})
    pipeline, viewer = {"X-API-Key": keys["p"]}, {"X-API-Key": keys["v"]}
    port = free_port()
    sink = OtlpSink(port) if variant == "collector-up" else None
    app = AppProcess(env={"DATABASE_URL": url, "OTEL_SERVICE_NAME": "hitl-review",
                          "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                          "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
                     log_path=work / f"{variant}.log")
    samples: list[Sample] = []
    try:
        with httpx.Client(base_url=app.url, timeout=10) as client:
            start = time.monotonic()
            for n in range(requests + 1):
                if n % every == 0:
                    samples.append(Sample(variant, n, round(app.rss_bytes() / 2**20, 1),
                                          round(time.monotonic() - start, 1)))
                    print(json.dumps(asdict(samples[-1])), file=sys.stderr, flush=True)
                if n == requests:
                    break
                if n % SUBMIT_EVERY == 0:
                    r = client.post("/api/v1/reviews", json=review_body(), headers=pipeline)
                    expected = 201
                else:
                    r = client.get("/api/v1/reviews", params={"limit": 5}, headers=viewer)
                    expected = 200
                if r.status_code != expected:
                    raise RuntimeError(f"{variant}: request {n} answered {r.status_code}: {r.text[:200]}")
    finally:
        app.stop()
        if sink:
            sink.stop()
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30000)
    parser.add_argument("--every", type=int, default=2000, help="sample the RSS every N requests")
    parser.add_argument("--out", type=Path, help="append the samples to this JSONL file")
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="run only this variant (repeatable; default: both)")
    args = parser.parse_args(argv)
    run = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    samples = []
    with tempfile.TemporaryDirectory(prefix="hitl-app-memory-") as work:
        for variant in args.variant or VARIANTS:
            got = run_variant(variant, args.requests, args.every, Path(work))
            for s in got:
                record(s, args.out, kind="app-memory", run=run)
            samples += got
    print(memory_table([asdict(s) for s in samples]))


if __name__ == "__main__":
    main()
