"""The review API end to end through HTTP, on both database backends."""

from datetime import datetime

import pytest

from harness.factories import decision_body, review_body


def submit(as_role, **overrides):
    r = as_role("pipeline").post("/api/v1/reviews", json=review_body(**overrides))
    assert r.status_code == 201, r.text
    return r.json()


def test_submit_returns_the_review_and_is_idempotent_on_apv_code(as_role):
    body = review_body()
    first = as_role("pipeline").post("/api/v1/reviews", json=body)
    assert first.status_code == 201
    assert first.json()["status"] == "pending"
    assert first.headers["location"] == f"/api/v1/reviews/{first.json()['id']}"
    again = as_role("pipeline").post("/api/v1/reviews", json=body)
    assert again.status_code == 200
    assert again.json() | {"waiting_seconds": 0} == first.json() | {"waiting_seconds": 0}
    assert again.headers["location"] == first.headers["location"]


def test_a_repeat_apv_code_with_a_different_payload_is_409_naming_the_fields(as_role):
    body = review_body()
    first = as_role("pipeline").post("/api/v1/reviews", json=body)
    changed = {**body, "priority": body["priority"] % 10 + 1, "cwe_ids": ["CWE-1"], "pr_url": None}
    again = as_role("pipeline").post("/api/v1/reviews", json=changed)
    assert again.status_code == 409, again.text
    detail = again.json()["detail"]
    assert body["apv_code"] in detail and "priority, cwe_ids" in detail and "pr_url" in detail
    assert "patch_diff" not in detail
    stored = as_role("viewer").get(f"/api/v1/reviews/{first.json()['id']}").json()
    assert stored["priority"] == body["priority"] and stored["cwe_ids"] == body["cwe_ids"]  # unchanged
    omitted = {k: v for k, v in body.items() if k != "cve_description"}  # a default is a value too
    refused = as_role("pipeline").post("/api/v1/reviews", json=omitted)
    assert refused.status_code == 409 and refused.json()["detail"].count(",") == 0, refused.text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 0),
        ("priority", 11),
        ("cvss_score", 10.5),
        ("severity", "urgent"),
        ("patch_strategy", "yolo"),
        ("confirmation_score", 1.2),
        ("apv_code", "not-an-apv"),
        ("cve_id", "CVE-1"),
        ("cve_title", "nul\x00byte"),
        ("pr_number", 2**40),
        ("wargame_verdict", "won"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(as_role, field, value):
    r = as_role("pipeline").post("/api/v1/reviews", json=review_body(**{field: value}))
    assert r.status_code == 422, r.text
    locations = [e["loc"] for e in r.json()["detail"]]
    assert any(field in loc for loc in locations), locations


def test_missing_and_unknown_fields_are_422(as_role):
    body = review_body()
    del body["severity"]
    r = as_role("pipeline").post("/api/v1/reviews", json={**body, "surprise": 1})
    assert r.status_code == 422
    locs = {tuple(e["loc"]) for e in r.json()["detail"]}
    assert ("body", "severity") in locs and ("body", "surprise") in locs


def test_a_body_over_the_limit_is_413(as_role):
    r = as_role("pipeline").post("/api/v1/reviews", json=review_body(patch_diff="x" * 90_000))
    assert r.status_code == 413


def test_list_filters_orders_newest_first_and_pages(as_role):
    a = submit(as_role, severity="critical", patch_strategy="code_rewrite")
    b = submit(as_role, severity="low", wargame_verdict="partial")
    c = submit(as_role, severity="critical")
    reader = as_role("viewer")
    page = reader.get("/api/v1/reviews", params={"limit": 2}).json()
    assert page["total"] == 3 and page["limit"] == 2
    assert [i["id"] for i in page["items"]] == [c["id"], b["id"]]
    assert reader.get("/api/v1/reviews", params={"limit": 2, "offset": 2}).json()["items"][0]["id"] == a["id"]
    crit = reader.get("/api/v1/reviews", params={"severity": "critical"}).json()
    assert {i["id"] for i in crit["items"]} == {a["id"], c["id"]}
    assert reader.get("/api/v1/reviews", params={"patch_strategy": "code_rewrite"}).json()["total"] == 1
    assert reader.get("/api/v1/reviews", params={"wargame_verdict": "partial"}).json()["total"] == 1
    assert reader.get("/api/v1/reviews", params={"status": "decided"}).json()["total"] == 0
    assert all(i["waiting_seconds"] >= 0 for i in page["items"])


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"offset": -1}, {"severity": "x"}])
def test_list_rejects_bad_query_parameters(as_role, params):
    r = as_role("viewer").get("/api/v1/reviews", params=params)
    assert r.status_code == 422
    assert list(params)[0] in r.json()["detail"][0]["loc"]


def test_get_unknown_review_is_404_and_malformed_id_422(as_role):
    reader = as_role("reviewer")
    assert reader.get("/api/v1/reviews/00000000-0000-0000-0000-000000000000").status_code == 404
    assert reader.get("/api/v1/reviews/nope").status_code == 422


def test_approve_records_reviewer_from_the_key_and_snapshots_the_review(as_role, code_host):
    review = submit(as_role, severity="critical", wargame_verdict="failure")
    r = as_role("reviewer").post(
        f"/api/v1/reviews/{review['id']}/decisions", json=decision_body("approve", reviewer="mallory")
    )
    assert r.status_code == 422  # reviewer is never taken from the body
    r = as_role("reviewer").post(f"/api/v1/reviews/{review['id']}/decisions", json=decision_body("approve"))
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["reviewer"] == "test-reviewer"
    assert (d["cve_id"], d["severity"], d["patch_strategy"], d["wargame_verdict"]) == (
        review["cve_id"], "critical", "version_bump", "failure",
    )
    assert d["decision_latency_seconds"] >= 0
    assert d["action"] == "merge" and d["action_status"] == "succeeded"
    got = as_role("viewer").get(f"/api/v1/reviews/{review['id']}").json()
    assert got["status"] == "decided" and got["decided_at"] is not None
    assert as_role("viewer").get(f"/api/v1/decisions/{d['id']}").json() == d


def test_a_second_decision_is_409(as_role):
    review = submit(as_role)
    url = f"/api/v1/reviews/{review['id']}/decisions"
    assert as_role("reviewer").post(url, json=decision_body("reject")).status_code == 201
    r = as_role("reviewer").post(url, json=decision_body("approve"))
    assert r.status_code == 409
    assert "already decided" in r.json()["detail"]


def test_approve_and_reject_need_a_pull_request(as_role):
    review = submit(as_role, pr_number=None, pr_url=None, pr_branch=None)
    url = f"/api/v1/reviews/{review['id']}/decisions"
    for kind in ("approve", "reject"):
        r = as_role("reviewer").post(url, json=decision_body(kind))
        assert r.status_code == 409 and "pull request" in r.json()["detail"]
    assert as_role("reviewer").post(url, json=decision_body("escalate")).status_code == 201


def test_modify_needs_modifications_and_justification_needs_ten_characters(as_role):
    review = submit(as_role)
    url = f"/api/v1/reviews/{review['id']}/decisions"
    r = as_role("reviewer").post(url, json={"decision": "modify", "justification": "long enough text", "confidence": 0.5})
    assert r.status_code == 422 and "modifications" in r.text
    r = as_role("reviewer").post(url, json=decision_body("approve", justification="short"))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "justification"]
    r = as_role("reviewer").post(url, json=decision_body("approve", confidence=1.5))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "confidence"]


def test_escalation_then_decision_builds_the_history(as_role, code_host):
    review = submit(as_role)
    url = f"/api/v1/reviews/{review['id']}/decisions"
    first = as_role("reviewer").post(url, json=decision_body("escalate")).json()
    assert first["action"] == "escalate"
    assert as_role("viewer").get(f"/api/v1/reviews/{review['id']}").json()["status"] == "escalated"
    assert as_role("reviewer").post(url, json=decision_body("escalate")).status_code == 409
    second = as_role("reviewer").post(url, json=decision_body("modify")).json()
    history = as_role("viewer").get(url).json()
    assert [d["id"] for d in history["decisions"]] == [first["id"], second["id"]]
    assert [c.path for c in code_host.calls] == ["/escalations", f"/pulls/{review['pr_number']}/request_changes"]


def test_decision_on_unknown_review_is_404(as_role):
    r = as_role("reviewer").post(
        "/api/v1/reviews/00000000-0000-0000-0000-000000000000/decisions", json=decision_body()
    )
    assert r.status_code == 404


def test_stats_count_and_are_invalidated_on_writes(as_role):
    reader = as_role("viewer")
    empty = reader.get("/api/v1/stats").json()
    assert empty["pending_by_severity"] == {"critical": 0, "high": 0, "medium": 0, "low": 0}
    assert empty["review_time"]["median_seconds"] is None
    reviews = [submit(as_role, severity=s) for s in ("critical", "critical", "low", "medium")]
    s = reader.get("/api/v1/stats").json()  # a write since the last read: not the cached value
    assert s["pending_by_severity"] == {"critical": 2, "high": 0, "medium": 1, "low": 1}
    assert s["reviews_today"] == 4 and s["reviews_this_week"] == 4
    for review, kind in zip(reviews[:3], ("approve", "reject", "escalate"), strict=True):
        as_role("reviewer").post(f"/api/v1/reviews/{review['id']}/decisions", json=decision_body(kind))
    s = reader.get("/api/v1/stats").json()
    assert s["decisions_by_kind"] == {"approve": 1, "reject": 1, "modify": 0, "escalate": 1}
    assert s["pending_by_severity"] == {"critical": 0, "high": 0, "medium": 1, "low": 1}
    assert s["decisions_today"] == 3
    rt = s["review_time"]
    assert rt["fastest_seconds"] <= rt["median_seconds"] <= rt["slowest_seconds"]


def test_liveness_and_readiness_need_no_key(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok" and ready.json()["cache"] == "ok"


def test_concurrent_decisions_on_one_review_exactly_one_wins(as_role, app):
    """Eight reviewers take final decisions on the same review at once: one is recorded, the
    others are refused as conflicts (the claiming UPDATE re-checks the state under the row lock)."""
    import threading

    from app.reviews import service
    from app.reviews.models import Decision
    from app.reviews.schemas import DecisionCreate

    review = submit(as_role)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def decide(kind: str) -> None:
        with app.state.db.sessionmaker() as session:
            barrier.wait()
            try:
                service.decide(session=session, cache=app.state.cache, code_host=app.state.code_host,
                               review_id=review["id"], data=DecisionCreate(**decision_body(kind)), reviewer="r")
                outcomes.append("decided")
            except service.Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=decide, args=(k,)) for k in ["approve", "reject", "modify", "approve"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["conflict"] * 7 + ["decided"]
    with app.state.db.sessionmaker() as session:
        assert session.query(Decision).filter_by(review_id=review["id"]).count() == 1


@pytest.mark.parametrize("kind", ["approve", "modify", "escalate"])
def test_without_a_code_host_a_decision_is_one_write_with_its_action_skipped(as_role, app, backend, kind,
                                                                              monkeypatch):
    """No code host: the skipped action is stored with the decision (no second write) and shown
    by an action span; on PostgreSQL the claim and the insert are one statement. What is stored
    is what was returned."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sqlalchemy import event

    from app.reviews import service
    from app.reviews.flows import CodeHost
    from app.reviews.schemas import DecisionCreate

    review = submit(as_role, severity="high", wargame_verdict="partial")
    spans = InMemorySpanExporter()
    monkeypatch.delenv("OTEL_SDK_DISABLED")  # the suite's in-process apps run without the SDK
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(service, "tracer", provider.get_tracer("test"))
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement.split()[0])

    engine = app.state.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with app.state.db.sessionmaker() as session:
            decision, _ = service.decide(session=session, cache=app.state.cache, code_host=CodeHost(None, None, 1.0),
                                      review_id=review["id"], data=DecisionCreate(**decision_body(kind)), reviewer="r")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements == (["WITH"] if backend["name"] == "postgresql" else ["UPDATE", "INSERT"])
    assert (decision.action_status, decision.action_attempts, decision.action_error) == (
        "skipped", 1, "no code host configured")
    [span] = spans.get_finished_spans()
    assert span.name == f"action {decision.action}"
    assert dict(span.attributes) == {"hitl.action": decision.action, "hitl.action.outcome": "skipped"}
    assert (decision.cve_id, decision.severity.value, decision.wargame_verdict.value) == (
        review["cve_id"], "high", "partial")
    stored = as_role("viewer").get(f"/api/v1/decisions/{decision.id}").json()
    assert stored["review_id"] == review["id"] and stored["action_status"] == "skipped"
    assert stored["decision_latency_seconds"] == pytest.approx(decision.decision_latency_seconds, abs=1e-6)
    got = as_role("viewer").get(f"/api/v1/reviews/{review['id']}").json()
    assert got["status"] == ("escalated" if kind == "escalate" else "decided")
    waited = (datetime.fromisoformat(stored["created_at"]) - datetime.fromisoformat(review["created_at"]))
    assert stored["decision_latency_seconds"] == pytest.approx(waited.total_seconds(), abs=1e-3)
