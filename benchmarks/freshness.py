"""Freshness of the RED pipeline on a running native stack (scripts/run.sh), with its
production intervals: how long from a request's answer until (a) its span-derived request count
and (b) an exemplar carrying its trace id are queryable in Prometheus, and whether every
exemplar's trace id resolves in Jaeger to the server span of that route.

    python -m benchmarks.freshness [--requests 40] [--interval 1.0]

Each request carries its own W3C traceparent, so its trace id is known in advance. It calls an
admin-only route nobody else calls (GET /api/v1/admin/faults), so the series and its exemplars
belong to this benchmark alone and the span metrics connector keeps them (it keeps a bounded
number of exemplars per series and flush). The simulator may keep running.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import threading
import time

import httpx

from app.auth.models import Role
from app.auth.service import create_key
from app.config import Settings
from app.db import Database

ROUTE = "/api/v1/admin/faults"
SERIES = (f'traces_span_metrics_calls_total{{service_name="hitl-review", span_kind="SPAN_KIND_SERVER", '
          f'http_route="{ROUTE}", http_request_method="GET"}}')
BUCKETS = (f'traces_span_metrics_duration_seconds_bucket{{service_name="hitl-review", '
           f'span_kind="SPAN_KIND_SERVER", http_route="{ROUTE}"}}')


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--app", default="http://127.0.0.1:8000")
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--jaeger", default="http://127.0.0.1:16686")
    p.add_argument("--database-url", default=os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://hitl:hitl@127.0.0.1:5432/hitl"))
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between requests")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds to wait for each one")
    args = p.parse_args()

    db = Database(Settings(DATABASE_URL=args.database_url))
    with db.sessionmaker() as session:
        key = create_key(session=session, name=f"bench-freshness-{secrets.token_hex(4)}", role=Role.admin)[1]
    db.engine.dispose()

    prom = httpx.Client(base_url=args.prometheus, timeout=10)
    sent: dict[str, float] = {}          # trace id -> time the answer arrived
    count_seen: dict[int, float] = {}    # cumulative count n -> first time Prometheus showed >= n
    exemplar_seen: dict[str, float] = {}
    start = time.time()
    before = prom.get("/api/v1/query", params={"query": f"sum({SERIES})"}).json()["data"]["result"]
    base = float(before[0]["value"][1]) if before else 0.0
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            now = time.time()
            result = prom.get("/api/v1/query", params={"query": f"sum({SERIES})"}).json()["data"]["result"]
            value = float(result[0]["value"][1]) - base if result else 0.0
            for n in range(1, int(value) + 1):
                count_seen.setdefault(n, now)
            data = prom.get("/api/v1/query_exemplars",
                            params={"query": BUCKETS, "start": start - 1, "end": now + 1}).json()["data"]
            for series in data:
                for exemplar in series["exemplars"]:
                    exemplar_seen.setdefault(exemplar["labels"].get("trace_id", ""), now)
            time.sleep(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    order: list[str] = []
    with httpx.Client(base_url=args.app, headers={"X-API-Key": key}, timeout=10) as client:
        for _ in range(args.requests):
            trace_id = secrets.token_hex(16)
            r = client.get(ROUTE, headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"})
            r.raise_for_status()
            sent[trace_id] = time.time()
            order.append(trace_id)
            time.sleep(args.interval)
    deadline = time.time() + args.deadline
    while time.time() < deadline and (len(count_seen) < len(order) or not set(order) <= set(exemplar_seen)):
        time.sleep(0.5)
    stop.set()
    poller.join()

    count_lag = [count_seen[i + 1] - sent[t] for i, t in enumerate(order) if i + 1 in count_seen]
    with_exemplar = [t for t in order if t in exemplar_seen]
    exemplar_lag = [exemplar_seen[t] - sent[t] for t in with_exemplar]

    resolved = 0
    for trace_id in with_exemplar:
        trace = httpx.get(f"{args.jaeger}/api/traces/{trace_id}", timeout=10)
        spans = (trace.json().get("data") or [{}])[0].get("spans", []) if trace.status_code == 200 else []
        resolved += any(s["operationName"] == f"GET {ROUTE}" for s in spans)

    def row(name: str, lags: list[float]) -> str:
        if not lags:
            return f"| {name} | 0 | - | - | - |"
        return (f"| {name} | {len(lags)} | {statistics.median(lags):.1f} | {percentile(lags, 0.95):.1f} | "
                f"{max(lags):.1f} |")

    print(f"\n{len(order)} requests, one every {args.interval:g} s, against {args.app}\n")
    print("| from the answer until Prometheus has | requests | p50 s | p95 s | max s |")
    print("|---|---:|---:|---:|---:|")
    print(row("its request count", count_lag))
    print(row("an exemplar with its trace id", exemplar_lag))
    print(f"\nrequests with an exemplar: {len(with_exemplar)} of {len(order)}; "
          f"exemplars resolving in Jaeger to the route's server span: {resolved} of {len(with_exemplar)} "
          f"({100 * resolved / max(1, len(with_exemplar)):.0f}%)")


if __name__ == "__main__":
    main()
