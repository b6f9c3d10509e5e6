"""Every route but health needs a key, and the key's role decides what it may do."""

import uuid

import pytest
from sqlalchemy import select

from app.auth.models import ApiKey
from harness.factories import decision_body, review_body

# The roles each route admits besides admin. Every route of the application must be here (the
# first test reads the application's own route table), so a new route cannot go untested.
ROLES = {
    ("post", "/api/v1/reviews"): {"pipeline"},
    ("get", "/api/v1/reviews"): {"reviewer", "viewer"},
    ("get", "/api/v1/reviews/{id}"): {"reviewer", "viewer"},
    ("post", "/api/v1/reviews/{id}/decisions"): {"reviewer"},
    ("get", "/api/v1/reviews/{id}/decisions"): {"reviewer", "viewer"},
    ("get", "/api/v1/decisions/{id}"): {"reviewer", "viewer"},
    ("get", "/api/v1/stats"): {"reviewer", "viewer"},
    ("get", "/api/v1/admin/faults"): set(),
    ("put", "/api/v1/admin/faults"): set(),
}
ROUTES = [(method, path, allowed) for (method, path), allowed in ROLES.items()]
# Open by design: the probes (the API's description, /openapi.json and /docs, holds no data and is
# not an operation of the document).
PUBLIC = {("get", "/health/live"), ("get", "/health/ready")}


def test_every_route_of_the_application_is_listed(app):
    """Read from the application's OpenAPI document, which lists every operation it serves."""
    import re

    served = {
        (method, re.sub(r"\{[a-z_]+\}", "{id}", path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert served - PUBLIC == set(ROLES), "a route without a role expectation, or an expectation without a route"
    assert served & PUBLIC == {("get", "/health/live"), ("get", "/health/ready")}


@pytest.fixture
def review_id(as_role):
    return as_role("pipeline").post("/api/v1/reviews", json=review_body()).json()["id"]


@pytest.fixture
def decision_id(as_role, review_id):
    return as_role("reviewer").post(f"/api/v1/reviews/{review_id}/decisions", json=decision_body("escalate")).json()["id"]


def _call(client, method, path, an_id, headers):
    url = path.format(id=an_id)
    body = None
    if method == "post":
        body = review_body() if url.endswith("/reviews") else decision_body()
    elif method == "put":
        body = {}
    return client.request(method.upper(), url, json=body, headers=headers)


def _id_for(path, review_id, decision_id):
    return decision_id if path.startswith("/api/v1/decisions/") else review_id


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
def test_missing_or_invalid_key_is_401(client, review_id, decision_id, method, path, allowed):
    for headers in ({}, {"X-API-Key": "hitl_not-a-real-key"}, {"X-API-Key": "x" * 500}):
        r = _call(client, method, path, _id_for(path, review_id, decision_id), headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize(("method", "path", "allowed"), [r for r in ROUTES if "{id}" in r[1]])
def test_without_a_key_an_unknown_id_is_401_too(client, method, path, allowed):
    """The credential is checked before the lookup: 404 vs 401 would tell which ids exist."""
    for headers in ({}, {"X-API-Key": "hitl_not-a-real-key"}):
        r = _call(client, method, path, str(uuid.uuid4()), headers)
        assert r.status_code == 401, (method, path, headers, r.status_code)


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
def test_each_role_gets_exactly_its_routes(client, keys, review_id, decision_id, method, path, allowed):
    for role, token in keys.items():
        r = _call(client, method, path, _id_for(path, review_id, decision_id), {"X-API-Key": token})
        if role in allowed or role == "admin":
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)


def test_keys_are_stored_hashed(app, keys):
    with app.state.db.sessionmaker() as session:
        stored = session.scalars(select(ApiKey)).all()
    assert stored and all(k.key_hash not in keys.values() and len(k.key_hash) == 64 for k in stored)
    for token in keys.values():
        assert all(token not in (k.key_hash, k.prefix) for k in stored)


def test_create_key_command_prints_a_working_token(backend, tmp_path, monkeypatch, capsys):
    from app.__main__ import main
    from app.config import get_settings

    monkeypatch.setenv("DATABASE_URL", backend["database_url"])
    get_settings.cache_clear()
    try:
        main(["create-key", "cli-made", "viewer"])
    finally:
        get_settings.cache_clear()
    token = capsys.readouterr().out.strip()
    assert token.startswith("hitl_")
    from tests.conftest import make_settings
    from app.main import create_app
    from fastapi.testclient import TestClient

    app = create_app(make_settings(backend))
    with TestClient(app) as c:
        assert c.get("/api/v1/stats", headers={"X-API-Key": token}).status_code == 200
        assert c.post("/api/v1/reviews", json=review_body(), headers={"X-API-Key": token}).status_code == 403
    with app.state.db.sessionmaker() as session:
        session.delete(session.scalar(select(ApiKey).where(ApiKey.name == "cli-made")))
        session.commit()


def test_a_revoked_key_is_refused_within_the_verifiers_ttl(client, keys, monkeypatch, backend, capsys):
    """`python -m app revoke-key NAME` on the shared database: a replica that verified the key a
    moment ago (and remembers it) refuses it once its memory of the key runs out."""
    import time

    from app.__main__ import main
    from app.auth import service as auth_service
    from app.config import get_settings

    monkeypatch.setattr(auth_service, "VERIFIED_KEY_TTL_SECONDS", 1.0)
    headers = {"X-API-Key": keys["viewer"]}
    assert client.get("/api/v1/stats", headers=headers).status_code == 200  # verified, remembered
    monkeypatch.setenv("DATABASE_URL", backend["database_url"])
    get_settings.cache_clear()
    try:
        main(["revoke-key", "test-viewer"])
        with pytest.raises(SystemExit, match="no key named 'nobody'"):
            main(["revoke-key", "nobody"])
    finally:
        get_settings.cache_clear()
    revoked_at = time.monotonic()
    assert "revoked key 'test-viewer'" in capsys.readouterr().err
    while client.get("/api/v1/stats", headers=headers).status_code == 200:
        assert time.monotonic() - revoked_at < 1.0 + 0.5, "the revoked key was still accepted after the TTL"
        time.sleep(0.05)
    assert client.get("/api/v1/stats", headers=headers).status_code == 401
    assert client.get("/api/v1/stats", headers={"X-API-Key": keys["reviewer"]}).status_code == 200
