"""Thin clients for the HTTP query APIs of Prometheus, Jaeger and VictoriaLogs."""

from __future__ import annotations

import json
import time

import httpx


def prom_query(prometheus_url: str, query: str) -> list[dict]:
    """Instant query; returns the result vector, raises on a query error."""
    r = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus refused {query!r}: {body.get('error')}")
    return body["data"]["result"]


def prom_vector(prometheus_url: str, query: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Instant query as {(label values...): value}."""
    return {
        tuple(s["metric"].get(label, "") for label in labels): float(s["value"][1])
        for s in prom_query(prometheus_url, query)
    }


def prom_exemplars(prometheus_url: str, query: str, start: float, end: float | None = None) -> list[dict]:
    """[{series labels, exemplar labels, value, timestamp}] from /api/v1/query_exemplars."""
    r = httpx.get(f"{prometheus_url}/api/v1/query_exemplars",
                  params={"query": query, "start": start, "end": end or time.time()}, timeout=10)
    body = r.json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus refused exemplars of {query!r}: {body.get('error')}")
    return [
        {"series": series["seriesLabels"], **exemplar}
        for series in body["data"]
        for exemplar in series["exemplars"]
    ]


def jaeger_trace(jaeger_url: str, trace_id: str, client: httpx.Client | None = None) -> dict | None:
    """The trace from Jaeger's query API ({spans, processes}), or None while it is unknown.
    `client`: a shared one keeps its connections (many reads in a row)."""
    r = (client or httpx).get(f"{jaeger_url}/api/traces/{trace_id}", timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    data = r.json().get("data") or []
    return data[0] if data else None


def span_tags(span: dict) -> dict[str, object]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def jaeger_traces_json(jaeger_url: str, service: str, lookback_seconds: int = 3600, limit: int = 5000,
                       operation: str | None = None) -> str:
    """The newest traces of a service (and operation) in the lookback, as Jaeger's raw JSON."""
    end = int(time.time() * 1_000_000)
    params = {"service": service, "limit": limit, "start": end - lookback_seconds * 1_000_000, "end": end}
    if operation:
        params["operation"] = operation
    r = httpx.get(f"{jaeger_url}/api/traces", timeout=30, params=params)
    r.raise_for_status()
    return r.text


def jaeger_dependencies(jaeger_url: str, lookback_seconds: int = 3600) -> list[dict]:
    end_ms = int(time.time() * 1000)
    r = httpx.get(f"{jaeger_url}/api/dependencies",
                  params={"endTs": end_ms, "lookback": lookback_seconds * 1000}, timeout=10)
    r.raise_for_status()
    return r.json().get("data") or []


def logs_query(victorialogs_url: str, query: str, limit: int = 10000) -> list[dict]:
    """LogsQL query; one dict per log record (VictoriaLogs answers JSON lines)."""
    r = httpx.post(f"{victorialogs_url}/select/logsql/query", data={"query": query, "limit": limit}, timeout=30)
    if r.status_code != 200:
        raise AssertionError(f"VictoriaLogs refused {query!r}: {r.status_code} {r.text[:500]}")
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def simulator_edge(*, jaeger_url: str, app_url: str, otlp_endpoint: str, keys: dict[str, str],
                   base_env: dict[str, str]) -> dict:
    """Run the simulator (the upstream pipeline) for 20 requests against the service, exporting to
    otlp_endpoint; return its hitl-simulator -> hitl-review edge once Jaeger's dependency API shows it.

    Asked with a lookback that starts at the run: Jaeger's Badger store derives dependencies
    from the newest 100 traces of the lookback only (badger/dependencystore: FindTraces with
    its default limit), so an hour of other traffic would hide the edge."""
    import subprocess
    import sys
    from pathlib import Path

    from harness.polling import wait_for

    started = time.time()
    env = {k: v for k, v in base_env.items() if not k.startswith("OTEL_")} | {
        "OTEL_SERVICE_NAME": "hitl-simulator",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        "SIM_PIPELINE_KEY": keys["pipeline"],
        "SIM_REVIEWER_KEY": keys.get("reviewer", keys["pipeline"]),
    }
    done = subprocess.run([sys.executable, "-m", "simulator", "--url", app_url, "--rate", "5",
                           "--think-time", "0.2", "--bad-share", "0", "--max-requests", "20", "--duration", "30"],
                          env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]

    def edge():
        lookback = int(time.time() - started) + 5
        return [d for d in jaeger_dependencies(jaeger_url, lookback_seconds=lookback)
                if d["parent"] == "hitl-simulator" and d["child"] == "hitl-review" and d["callCount"] > 0]

    return wait_for("a hitl-simulator -> hitl-review dependency in Jaeger", edge, timeout=120, interval=2)[0]
