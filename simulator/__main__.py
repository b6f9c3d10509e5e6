"""Simulator: the pipeline submits APVs, reviewers decide on them after some think time, and a
configurable share of requests is bad (invalid body, unknown id, wrong role, double decision).

It exports its own OpenTelemetry (service.name hitl-simulator) and propagates the trace
context, so each request is one trace across two services and the service graph
shows the simulator -> hitl-review edge (Jaeger derives it from the traces: /api/dependencies).

    SIM_PIPELINE_KEY=... SIM_REVIEWER_KEY=... python -m simulator --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

import httpx

log = logging.getLogger("simulator")

SEVERITIES = [("critical", 0.1, 9.5), ("high", 0.3, 8.0), ("medium", 0.4, 5.5), ("low", 0.2, 2.5)]
STRATEGIES = ["version_bump", "code_rewrite", "config_change", "workaround"]
VERDICTS = ["success", "partial", "failure", "inconclusive", None]
PACKAGES = [("requests", "pypi"), ("lodash", "npm"), ("jackson-databind", "maven"), ("openssl", "deb"), ("serde", "crates")]
DECISIONS = [("approve", 0.55), ("reject", 0.15), ("modify", 0.15), ("escalate", 0.15)]


@dataclass
class Counts:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int) -> None:
        with self.lock:
            self.sent += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1


def _pick(weighted):
    r, acc = random.random(), 0.0
    for item in weighted:
        acc += item[1]
        if r <= acc:
            return item
    return weighted[-1]


def make_apv(n: int) -> dict:
    severity, _, cvss = _pick(SEVERITIES)
    package, ecosystem = random.choice(PACKAGES)
    has_pr = random.random() < 0.9
    pr = random.randint(1, 99999)
    day = time.strftime("%Y%m%d", time.gmtime())
    return {
        "apv_code": f"APV-{day}-{os.getpid()}-{n:06d}",
        "priority": random.randint(1, 10),
        "source": "simulator",
        "cve_id": f"CVE-{time.gmtime().tm_year}-{random.randint(1000, 99999)}",
        "cve_title": f"Vulnerability in {package}",
        "cve_description": "Simulated finding from the remediation pipeline.",
        "cvss_score": round(min(10.0, max(0.0, random.gauss(cvss, 0.8))), 1),
        "severity": severity,
        "cwe_ids": [f"CWE-{random.choice([79, 89, 502, 611, 918])}"],
        "package_name": package,
        "package_version": f"{random.randint(0, 5)}.{random.randint(0, 20)}.0",
        "package_ecosystem": ecosystem,
        "fixed_version": f"{random.randint(6, 9)}.0.0",
        "affected_files": [f"src/module_{random.randint(1, 40)}.py"],
        "confirmation_score": round(random.uniform(0.5, 1), 2),
        "static_score": round(random.uniform(0, 1), 2),
        "dynamic_score": round(random.uniform(0, 1), 2),
        "false_positive_score": round(random.uniform(0, 0.3), 2),
        "patch_strategy": random.choice(STRATEGIES),
        "patch_description": "Generated patch.",
        "patch_diff": "--- a\n+++ b\n",
        "patch_confidence": round(random.uniform(0.4, 1), 2),
        "patch_risk_level": random.choice(["low", "medium", "high"]),
        "validation_passed": random.random() < 0.85,
        "validation_confidence": round(random.uniform(0.5, 1), 2),
        "pr_number": pr if has_pr else None,
        "pr_url": f"https://code.example.test/org/repo/pull/{pr}" if has_pr else None,
        "pr_branch": f"fix/{package}-{pr}" if has_pr else None,
        "wargame_verdict": random.choice(VERDICTS),
        "wargame_confidence": round(random.uniform(0, 1), 2),
    }


class Simulator:
    def __init__(self, args, pipeline_key: str, reviewer_key: str):
        self.args = args
        self.client = httpx.Client(base_url=args.url, timeout=10)
        self.pipeline = {"X-API-Key": pipeline_key}
        self.reviewer = {"X-API-Key": reviewer_key}
        self.counts = Counts()
        self.stop = threading.Event()
        self.deadline = time.monotonic() + args.duration if args.duration else None
        self.seq = 0

    def done(self) -> bool:
        if self.stop.is_set():
            return True
        if self.deadline and time.monotonic() > self.deadline:
            return True
        return bool(self.args.max_requests) and self.counts.sent >= self.args.max_requests

    def call(self, method: str, path: str, **kw) -> httpx.Response | None:
        try:
            r = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            log.warning("%s %s failed: %s", method, path, type(exc).__name__)
            self.counts.add(0)
            return None
        self.counts.add(r.status_code)
        return r

    def bad_request(self) -> None:
        kind = random.choice(["invalid", "unknown", "forbidden", "double"])
        if kind == "invalid":
            self.call("POST", "/api/v1/reviews", json={"apv_code": "bad", "priority": 99}, headers=self.pipeline)
        elif kind == "unknown":
            self.call("GET", "/api/v1/reviews/00000000-0000-0000-0000-000000000000", headers=self.reviewer)
        elif kind == "forbidden":
            self.call("GET", "/api/v1/stats", headers=self.pipeline)
        else:
            r = self.call("GET", "/api/v1/reviews", params={"status": "decided", "limit": 1}, headers=self.reviewer)
            items = r.json().get("items", []) if r is not None and r.status_code == 200 else []
            if items:
                self.call("POST", f"/api/v1/reviews/{items[0]['id']}/decisions",
                          json={"decision": "approve", "justification": "second opinion", "confidence": 0.5},
                          headers=self.reviewer)

    def pipeline_loop(self) -> None:
        while not self.done():
            self.seq += 1
            if random.random() < self.args.bad_share:
                self.bad_request()
            else:
                self.call("POST", "/api/v1/reviews", json=make_apv(self.seq), headers=self.pipeline)
            self.stop.wait(random.expovariate(self.args.rate))

    def reviewer_loop(self) -> None:
        while not self.done():
            r = self.call("GET", "/api/v1/reviews", params={"status": "pending", "limit": 20}, headers=self.reviewer)
            items = r.json().get("items", []) if r is not None and r.status_code == 200 else []
            if not items:
                self.stop.wait(1)
                continue
            review = random.choice(items)
            self.call("GET", f"/api/v1/reviews/{review['id']}", headers=self.reviewer)
            self.stop.wait(random.expovariate(1 / self.args.think_time))  # reading the patch
            decision = _pick(DECISIONS)[0]
            if decision in ("approve", "reject") and review.get("pr_number") is None:
                decision = "escalate"
            body = {"decision": decision, "justification": "Reviewed the diff and the attack evidence.",
                    "confidence": round(random.uniform(0.5, 1), 2)}
            if decision == "modify":
                body["modifications"] = {"note": "pin to the fixed minor version"}
            self.call("POST", f"/api/v1/reviews/{review['id']}/decisions", json=body, headers=self.reviewer)
            if random.random() < 0.2:
                self.call("GET", "/api/v1/stats", headers=self.reviewer)

    def run(self) -> Counts:
        threads = [threading.Thread(target=self.pipeline_loop, name="pipeline")]
        threads += [threading.Thread(target=self.reviewer_loop, name=f"reviewer-{i}") for i in range(self.args.reviewers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SIM_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SIM_RATE", "0.5")),
                        help="APV submissions per second (Poisson)")
    parser.add_argument("--reviewers", type=int, default=int(os.environ.get("SIM_REVIEWERS", "2")))
    parser.add_argument("--think-time", type=float, default=float(os.environ.get("SIM_THINK_SECONDS", "20")),
                        help="mean seconds a reviewer spends before deciding")
    parser.add_argument("--bad-share", type=float, default=float(os.environ.get("SIM_BAD_SHARE", "0.05")),
                        help="share of pipeline requests that are bad on purpose (4xx)")
    parser.add_argument("--duration", type=float, default=float(os.environ.get("SIM_DURATION", "0")),
                        help="stop after this many seconds (0: until interrupted)")
    parser.add_argument("--max-requests", type=int, default=int(os.environ.get("SIM_MAX_REQUESTS", "0")))
    args = parser.parse_args(argv)
    pipeline_key = os.environ.get("SIM_PIPELINE_KEY")
    reviewer_key = os.environ.get("SIM_REVIEWER_KEY")
    if not pipeline_key or not reviewer_key:
        parser.error("set SIM_PIPELINE_KEY and SIM_REVIEWER_KEY (python -m app create-key NAME pipeline|reviewer)")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from app.telemetry import setup_telemetry

    telemetry = setup_telemetry("hitl-simulator", os.environ.get("APP_ENV", "development"))
    sim = Simulator(args, pipeline_key, reviewer_key)
    signal.signal(signal.SIGTERM, lambda *_: sim.stop.set())
    try:
        counts = sim.run()
    except KeyboardInterrupt:
        sim.stop.set()
        counts = sim.counts
    log.info("sent %d requests: %s", counts.sent, dict(sorted(counts.by_status.items())))
    telemetry.shutdown()


if __name__ == "__main__":
    main()
