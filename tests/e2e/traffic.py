"""Known traffic against the live app: every request is counted by (method, route, status), so
the span-derived metrics in Prometheus can be compared with it exactly."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from harness.factories import decision_body, review_body

REVIEWS = "/api/v1/reviews"
REVIEW = "/api/v1/reviews/{review_id}"
DECISIONS = "/api/v1/reviews/{review_id}/decisions"
STATS = "/api/v1/stats"
FAULTS = "/api/v1/admin/faults"

# Something a careless client might send that must never reach a trace or a log.
LEAKY_EMAIL = "alice.reviewer@example.com"

SEVERITIES = {"critical": 3, "high": 4, "medium": 3, "low": 2}
DECISIONS_MADE = ["approve", "approve", "reject", "modify", "escalate", "escalate"]
SLOW_REQUESTS = 4
SLOW_SECONDS = 1.2
INJECTED_ERRORS = 5


@dataclass
class Traffic:
    started_at: float = field(default_factory=time.time)
    # (method, route template, status) -> requests the client saw answered so
    sent: Counter = field(default_factory=Counter)
    # (method, route template, status) -> what the plan expected; compared with `sent` first
    planned: Counter = field(default_factory=Counter)
    created: Counter = field(default_factory=Counter)  # severity -> reviews created
    decided: Counter = field(default_factory=Counter)  # decision -> decisions recorded
    pending: Counter = field(default_factory=Counter)  # severity -> reviews still waiting
    secrets: list[str] = field(default_factory=list)
    finished_at: float = 0.0


def drive(app, traffic: Traffic) -> Traffic:
    """Sends the whole plan sequentially and records what came back."""
    clients = {role: app.client(role) for role in ("pipeline", "reviewer", "viewer", "admin")}
    anonymous = app.client(None)
    traffic.secrets = [*app.keys.values(), LEAKY_EMAIL]

    def call(client: httpx.Client, method: str, route: str, expect: int, *, path: str | None = None,
             **kw) -> httpx.Response:
        r = client.request(method, path or route, **kw)
        traffic.sent[(method, route, r.status_code)] += 1
        traffic.planned[(method, route, expect)] += 1
        return r

    def set_faults(**faults) -> None:
        call(clients["admin"], "PUT", FAULTS, 200, json=faults)

    # Submissions: created, idempotent repeats, invalid, unauthenticated, wrong role.
    reviews, bodies = [], []
    for severity, n in SEVERITIES.items():
        for _ in range(n):
            bodies.append(review_body(severity=severity))
            r = call(clients["pipeline"], "POST", REVIEWS, 201, json=bodies[-1])
            reviews.append(r.json())
            traffic.created[severity] += 1
    for body in bodies[:2]:  # the same APV again: the stored review
        call(clients["pipeline"], "POST", REVIEWS, 200, json=body)
    call(clients["pipeline"], "POST", REVIEWS, 409, json={**bodies[0], "priority": bodies[0]["priority"] % 10 + 1})
    for bad in ({}, {"apv_code": "not-an-apv"}, review_body(cvss_score=11)):
        call(clients["pipeline"], "POST", REVIEWS, 422, json=bad)
    call(anonymous, "POST", REVIEWS, 401, json=review_body())
    call(clients["viewer"], "POST", REVIEWS, 403, json=review_body())

    # Reads, one of them with a query string and a header that carry secrets.
    for _ in range(7):
        call(clients["viewer"], "GET", REVIEWS, 200, params={"status": "pending", "limit": 50})
    call(clients["viewer"], "GET", REVIEWS, 200,
         params={"contact": LEAKY_EMAIL, "token": app.keys["admin"]}, headers={"X-Contact": LEAKY_EMAIL})
    call(clients["viewer"], "GET", REVIEWS, 422, params={"limit": 0})
    for review in reviews[:10]:
        call(clients["reviewer"], "GET", REVIEW, 200, path=f"{REVIEWS}/{review['id']}")
    for _ in range(3):
        call(clients["reviewer"], "GET", REVIEW, 404, path=f"{REVIEWS}/{uuid.uuid4()}")

    # Decisions (the code host refuses the first two actions; the service retries them).
    for review, decision in zip(reviews, DECISIONS_MADE, strict=False):
        body = decision_body(decision, justification=f"Checked by {LEAKY_EMAIL} against the exploit.")
        call(clients["reviewer"], "POST", DECISIONS, 201, path=f"{REVIEWS}/{review['id']}/decisions", json=body)
        traffic.decided[decision] += 1
    for review in reviews[:2]:
        call(clients["reviewer"], "POST", DECISIONS, 409, path=f"{REVIEWS}/{review['id']}/decisions",
             json=decision_body("reject"))
    for i, review in enumerate(reviews):
        # Escalated reviews still wait (for the security lead); the others were settled.
        if i >= len(DECISIONS_MADE) or DECISIONS_MADE[i] == "escalate":
            traffic.pending[review["severity"]] += 1

    # Stats, fast and then slowed by the fault switch (every request delayed).
    for _ in range(3):
        call(clients["viewer"], "GET", STATS, 200)
    set_faults(delay_ratio=1.0, delay_seconds=SLOW_SECONDS)
    for _ in range(SLOW_REQUESTS):
        call(clients["viewer"], "GET", STATS, 200)
    set_faults()

    # Injected server errors.
    set_faults(error_ratio=1.0)
    for review in reviews[:INJECTED_ERRORS]:
        call(clients["reviewer"], "GET", REVIEW, 500, path=f"{REVIEWS}/{review['id']}")
    set_faults()

    for client in [*clients.values(), anonymous]:
        client.close()
    traffic.finished_at = time.time()
    return traffic
