"""Steady load with its own ground truth, and what the stores hold of it afterwards.

The generator sends a fixed rate of requests (submit a review, read it back) and keeps, per
request, the trace id it chose (sent in `traceparent`, so the service's server span continues that
trace), the answer and the latency. Afterwards the same requests are looked up in each store:
the traces and their spans in Jaeger, the "review submitted" records in VictoriaLogs, the request
counts in the span metrics Prometheus scraped from every gateway.
"""

from __future__ import annotations

import secrets
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from harness.factories import review_body
from harness.polling import wait_for
from tests.e2e.backends import jaeger_trace, logs_query, prom_query, span_tags

REVIEWS = "/api/v1/reviews"
REVIEW = "/api/v1/reviews/{review_id}"
# Concurrent trace reads from Jaeger (its query API serves them in parallel).
READERS = 8


@dataclass
class Sent:
    method: str
    route: str
    trace_id: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    at: float


@dataclass
class SteadyLoad:
    """`rate` requests per second (half submits, half reads) from one thread, open loop: a slow
    answer does not delay the next request's start by more than the answer itself."""

    url: str
    keys: dict[str, str]
    rate: float = 20.0
    sent: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SteadyLoad:
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> SteadyLoad:
        self._stop.set()
        if self._thread:
            self._thread.join(30)
        return self

    def _run(self) -> None:
        pipeline = httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys["pipeline"]}, timeout=10)
        viewer = httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys["viewer"]}, timeout=10)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        last_review = None
        n = 0
        while not self._stop.is_set():
            if n % 2 == 0 or last_review is None:
                r = self._call(pipeline, "POST", REVIEWS, REVIEWS, json=review_body())
                if r is not None and r.status_code == 201:
                    last_review = r.json()["id"]
            else:
                self._call(viewer, "GET", REVIEW, f"{REVIEWS}/{last_review}")
            n += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
        pipeline.close()
        viewer.close()

    def _call(self, client: httpx.Client, method: str, route: str, path: str, **kw) -> httpx.Response | None:
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        start = time.monotonic()
        try:
            r = client.request(method, path, headers=headers, **kw)
            status = r.status_code
        except httpx.HTTPError:
            r, status = None, 0
        self.sent.append(Sent(method, route, trace_id, status, time.monotonic() - start, time.time()))
        return r

    # -- what was sent ------------------------------------------------------------------------

    def counts(self) -> Counter:
        return Counter((s.method, s.route, str(s.status)) for s in self.sent)

    def failures(self) -> list[Sent]:
        return [s for s in self.sent if s.status not in (200, 201)]

    def latency(self, since: float = 0.0, until: float = float("inf")) -> dict[str, float]:
        seconds = sorted(s.seconds for s in self.sent if since <= s.at <= until)
        if len(seconds) < 20:
            return {"n": len(seconds)}
        q = statistics.quantiles(seconds, n=100)
        return {"n": len(seconds), "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "max_ms": seconds[-1] * 1000}


# -- what the stores hold -------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredTrace:
    spans: int  # as stored (a span written twice counts twice)
    distinct: int  # distinct span ids
    server: int  # the service's server span of the request
    inserts: int  # the INSERT INTO reviews of a submit

    def complete(self, sent: Sent) -> bool:
        """The spans every request of its kind has, exactly once: the server span, and for a
        submit its INSERT (the others - cache reads, key lookups - vary with the cache's state,
        so they are counted, not expected)."""
        return self.server == 1 and self.inserts == (1 if sent.status == 201 else 0)


def traces_stored(jaeger_url: str, sent: list[Sent],
                  known: dict[str, StoredTrace] | None = None) -> dict[str, StoredTrace]:
    """trace id -> what Jaeger holds of that request's trace (all zero when it has none).
    `known`: an earlier reading; its complete traces are kept, not read again (to wait for the
    rest to arrive; a last full reading counts spans stored twice). Read READERS at a time over
    kept connections: one by one, a fault test's ~1,400 traces took about a minute per reading."""
    to_read = [s for s in sent if not (known and s.trace_id in known and known[s.trace_id].complete(s))]
    with httpx.Client(limits=httpx.Limits(max_connections=READERS)) as client, \
            ThreadPoolExecutor(READERS) as pool:
        read = dict(zip((s.trace_id for s in to_read),
                        pool.map(lambda s: stored_trace(jaeger_trace(jaeger_url, s.trace_id, client), s), to_read)))
    return {s.trace_id: read[s.trace_id] if s.trace_id in read else known[s.trace_id] for s in sent}


def stored_trace(trace: dict | None, s: Sent) -> StoredTrace:
    spans = (trace or {}).get("spans", [])
    tags = [span_tags(sp) for sp in spans]
    return StoredTrace(
        spans=len(spans), distinct=len({sp["spanID"] for sp in spans}),
        server=sum(1 for sp, t in zip(spans, tags)
                   if t.get("span.kind") == "server" and sp["operationName"] == f"{s.method} {s.route}"),
        inserts=sum(1 for t in tags if "INSERT INTO reviews" in str(t.get("db.query.text", ""))),
    )


def trace_losses(stored: dict[str, StoredTrace], sent: list[Sent]) -> dict[str, int]:
    """Traces missing or incomplete, and spans stored more than once, over the answered requests."""
    answered = [s for s in sent if s.status]
    return {
        "traces": len(answered),
        "missing": sum(1 for s in answered if stored[s.trace_id].spans == 0),
        "incomplete": sum(1 for s in answered if stored[s.trace_id].spans and not stored[s.trace_id].complete(s)),
        "spans": sum(stored[s.trace_id].spans for s in answered),
        "duplicate_spans": sum(stored[s.trace_id].spans - stored[s.trace_id].distinct for s in answered),
    }


def wait_whole(jaeger_url: str, sent: list[Sent], what: str, timeout: float) -> dict[str, int]:
    """Waits until Jaeger holds every answered request's trace whole (spans of one trace arrive in
    separate batches, so a trace can be found before it is complete), reading again only the traces
    not yet whole; then reads all once more, so spans stored twice are counted. Returns
    trace_losses; on timeout fails with the last of them."""
    stored: dict[str, StoredTrace] = {}

    def whole() -> bool:
        stored.update(traces_stored(jaeger_url, sent, known=stored))
        losses = trace_losses(stored, sent)
        if losses["missing"] or losses["incomplete"]:
            raise AssertionError(f"not whole yet: {losses}")  # wait_for reports the last one
        return True

    wait_for(what, whole, timeout=timeout, interval=1)
    return trace_losses(traces_stored(jaeger_url, sent), sent)


def log_records(victorialogs_url: str, environment: str) -> list[dict]:
    return logs_query(victorialogs_url, f'deployment.environment.name:"{environment}" AND _msg:"review submitted"',
                      limit=100000)


def counted_requests(prometheus_url: str, environment: str, window: str = "30m") -> Counter:
    """(method, route, status) -> requests the span metrics counted, summed over every gateway
    (collector_instance_id), from the raw samples: a gateway restart (same pinned id, counter
    from 0) adds what the restarted counter counts, as rate() would."""
    query = (f'traces_span_metrics_calls_total{{deployment_environment_name="{environment}", '
             f'span_kind="SPAN_KIND_SERVER"}}[{window}]')
    out: Counter = Counter()
    for series in prom_query(prometheus_url, query):
        values = [float(v) for _, v in series["values"]]
        total = values[0]
        for before, after in zip(values, values[1:]):
            total += after - before if after >= before else after
        m = series["metric"]
        out[(m.get("http_request_method", ""), m.get("http_route", ""), m.get("http_response_status_code", ""))] += total
    return out


def gateways_counting(prometheus_url: str, environment: str) -> set[str]:
    query = (f'count by (collector_instance_id) (traces_span_metrics_calls_total{{deployment_environment_name='
             f'"{environment}", span_kind="SPAN_KIND_SERVER"}})')
    return {s["metric"].get("collector_instance_id", "") for s in prom_query(prometheus_url, query)}
