"""Time from a full outage to the page reaching the pager, with the production rule windows.

    python -m benchmarks.page_latency [--scenario errors|crash ...] [--rate 10]

For each scenario: a fresh native stack (its own run dir, ports shifted by 200, production
intervals: span metrics flushed every 5 s, scrapes every 5 s, rules every 15 s, the real `for`
durations and Alertmanager group waits), the review service as a process, steady traffic until
no page is firing, then the fault:

    errors  every API request answered 500 (fault switch at 100%): the service is up, useless
    crash   the service process killed (SIGKILL): no requests, no telemetry

and the clock runs until the first PagerDuty trigger reaches a local stand-in for PagerDuty.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from harness.alert_sink import AlertSink
from harness.app_process import AppProcess
from stack.services import HOST, PG_PORT, REDIS_PORT, ports

REPO = Path(__file__).resolve().parents[1]
OFFSET = 200


def stack(env: dict, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "stack", *args], env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m stack {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def critical_firing(prometheus: str) -> list[str]:
    result = httpx.get(f"{prometheus}/api/v1/query", timeout=10, params={
        "query": 'ALERTS{severity="critical", alertstate="firing"}'}).json()["data"]["result"]
    return sorted({r["metric"]["alertname"] for r in result})


def run_scenario(scenario: str, rate: float, workdir: Path) -> dict:
    sink = AlertSink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"HITL_STACK_RUN": str(workdir / f"run-{scenario}"), "HITL_STACK_PORT_OFFSET": str(OFFSET)}
    p = ports(OFFSET)
    prometheus = f"http://{HOST}:{p['prometheus']}"
    stack(env, "down", "--purge")
    stack(env, "up", "--no-app", "--alert-sink", sink.url)
    app_env = {
        "DATABASE_URL": f"postgresql+psycopg://hitl:hitl@{HOST}:{PG_PORT + OFFSET}/hitl",
        "REDIS_URL": f"redis://{HOST}:{REDIS_PORT + OFFSET}/0",
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{p['otlp_grpc']}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    app = AppProcess(env=app_env, log_path=workdir / f"app-{scenario}.log")
    key = subprocess.run([sys.executable, "-m", "app", "create-key", f"bench-{scenario}", "admin"], cwd=REPO,
                         env=env | app_env | {"OTEL_SDK_DISABLED": "true"}, capture_output=True, text=True,
                         check=True).stdout.split()[0]
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=app.url, headers={"X-API-Key": key}, timeout=5) as client:
            while not stop.is_set():
                try:
                    client.get("/api/v1/stats")
                except httpx.HTTPError:
                    pass
                time.sleep(1 / rate)

    threading.Thread(target=traffic, daemon=True).start()
    try:
        # Healthy first: traffic flowing long enough for the rate windows, and no page firing
        # (ServiceDown fires while the service had not reported yet).
        time.sleep(60)
        deadline = time.time() + 300
        while critical_firing(prometheus) and time.time() < deadline:
            time.sleep(5)
        if critical_firing(prometheus):
            raise RuntimeError(f"pages still firing before the fault: {critical_firing(prometheus)}")
        before = len(sink.notifications)
        t0 = time.time()
        if scenario == "errors":
            httpx.put(f"{app.url}/api/v1/admin/faults", json={"error_ratio": 1.0}, headers={"X-API-Key": key})
        else:
            app.proc.send_signal(signal.SIGKILL)
        while time.time() - t0 < 600:
            pages = [n for n in sink.notifications[before:]
                     if n.receiver == "pagerduty" and n.body.get("event_action") == "trigger"]
            if pages:
                return {"scenario": scenario, "seconds": time.time() - t0,
                        "page": pages[0].body.get("payload", {}).get("summary", "?")}
            time.sleep(0.5)
        return {"scenario": scenario, "seconds": None, "page": "no page within 10 minutes"}
    finally:
        stop.set()
        app.stop()
        stack(env, "down", "--purge")
        sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=["errors", "crash"])
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second before and during the fault")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hitl-bench-page-"))
    results = [run_scenario(s, args.rate, workdir) for s in args.scenario or ["errors", "crash"]]
    print("\n| full outage | time to the first page | page |")
    print("|---|---:|---|")
    for r in results:
        seconds = f"{r['seconds']:.0f} s" if r["seconds"] is not None else "-"
        print(f"| {r['scenario']} | {seconds} | {r['page']} |")


if __name__ == "__main__":
    main()
