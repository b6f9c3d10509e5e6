"""Every route but health needs a key, and the key's role decides what it may do."""

import uuid

import pytest
from sqlalchemy import select

from app.auth.models import ApiKey
from tests.support.factories import decision_body, review_body

ROUTES = [
    ("post", "/api/v1/reviews", {"pipeline"}),
    ("get", "/api/v1/reviews", {"reviewer", "viewer"}),
    ("get", "/api/v1/reviews/{id}", {"reviewer", "viewer"}),
    ("post", "/api/v1/reviews/{id}/decisions", {"reviewer"}),
    ("get", "/api/v1/reviews/{id}/decisions", {"reviewer", "viewer"}),
    ("get", "/api/v1/stats", {"reviewer", "viewer"}),
    ("get", "/api/v1/admin/faults", set()),
]


@pytest.fixture
def review_id(as_role):
    return as_role("pipeline").post("/api/v1/reviews", json=review_body()).json()["id"]


def _call(client, method, path, review_id, headers):
    url = path.format(id=review_id)
    body = None
    if method == "post":
        body = review_body() if url.endswith("/reviews") else decision_body()
    return client.request(method.upper(), url, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
def test_missing_or_invalid_key_is_401(client, review_id, method, path, allowed):
    for headers in ({}, {"X-API-Key": "hitl_not-a-real-key"}, {"X-API-Key": "x" * 500}):
        r = _call(client, method, path, review_id, headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "ApiKey"


@pytest.mark.parametrize(("method", "path", "allowed"), [r for r in ROUTES if "{id}" in r[1]])
def test_without_a_key_an_unknown_id_is_401_too(client, method, path, allowed):
    """The credential is checked before the lookup: 404 vs 401 would tell which ids exist."""
    for headers in ({}, {"X-API-Key": "hitl_not-a-real-key"}):
        r = _call(client, method, path, str(uuid.uuid4()), headers)
        assert r.status_code == 401, (method, path, headers, r.status_code)


@pytest.mark.parametrize(("method", "path", "allowed"), ROUTES)
def test_each_role_gets_exactly_its_routes(client, keys, review_id, method, path, allowed):
    for role, token in keys.items():
        r = _call(client, method, path, review_id, {"X-API-Key": token})
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
