"""PostgreSQL going away: readiness fails, requests get a quick 503 (no hang), nothing
accepted before is lost, and the service recovers by itself when the database returns."""

import time
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from app.auth.models import Role
from app.auth.service import create_key
from app.main import create_app
from app.migrate import upgrade
from harness.databases import fresh_postgres_database
from harness.factories import decision_body, review_body
from harness.polling import wait_for
from tests.conftest import make_settings
from tests.support.tcp_proxy import TcpProxy

BOUND_SECONDS = 8  # connect timeout (2 s) + pool timeout (2 s) + margin


@pytest.fixture
def proxied(postgres_admin_url):
    url = fresh_postgres_database(postgres_admin_url)
    upgrade(url)
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname, parts.port)
    proxied_url = url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    settings = make_settings(
        {"database_url": proxied_url, "redis_url": None},
        DB_CONNECT_TIMEOUT_SECONDS=2,
        DB_POOL_TIMEOUT_SECONDS=2,
        DB_PROBE_INTERVAL_SECONDS=0.5,
        PENDING_GAUGE_REFRESH_SECONDS=0.5,
    )
    app = create_app(settings)
    with app.state.db.sessionmaker() as session:
        keys = {r.value: create_key(session=session, name=r.value, role=r)[1] for r in Role}
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, proxy, keys
    proxy.down()


def timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_database_outage_is_a_quick_503_and_loses_nothing(proxied):
    client, proxy, keys = proxied
    pipeline, reviewer = {"X-API-Key": keys["pipeline"]}, {"X-API-Key": keys["reviewer"]}
    accepted = [client.post("/api/v1/reviews", json=review_body(), headers=pipeline).json() for _ in range(3)]
    assert client.get("/health/ready").status_code == 200

    proxy.down()
    ready, took = timed(lambda: client.get("/health/ready"))
    assert ready.status_code == 503 and ready.json()["database"] == "unavailable" and took < BOUND_SECONDS
    for call in (
        lambda: client.get("/api/v1/reviews", headers=reviewer),
        lambda: client.post("/api/v1/reviews", json=review_body(), headers=pipeline),
        lambda: client.post(f"/api/v1/reviews/{accepted[0]['id']}/decisions", json=decision_body(), headers=reviewer),
    ):
        response, took = timed(call)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert took < BOUND_SECONDS, f"took {took:.1f}s"
    assert client.get("/health/live").status_code == 200  # the process itself is fine

    proxy.up()
    wait_for("readiness after the database returns", lambda: client.get("/health/ready").status_code == 200, timeout=20)
    listed = client.get("/api/v1/reviews", params={"limit": 200}, headers=reviewer).json()
    assert {r["id"] for r in accepted} <= {r["id"] for r in listed["items"]}
    # The decision refused during the outage left nothing half-done: it can be made now.
    assert client.get(f"/api/v1/reviews/{accepted[0]['id']}/decisions", headers=reviewer).json()["decisions"] == []
    assert client.post(f"/api/v1/reviews/{accepted[0]['id']}/decisions", json=decision_body(), headers=reviewer).status_code == 201


def test_the_probe_and_the_shared_state_reading_follow_the_outage(proxied):
    """hitl.database.up goes to 0 within a probe interval or two (the probe's own connection
    notices), back to 1 after; the shared-state reading keeps its last value and time meanwhile."""
    client, proxy, _ = proxied
    app = client.app
    probe = app.state.database_probe
    wait_for("a first probe", lambda: probe.up() == 1, timeout=10, interval=0.1)
    before = wait_for("a first reading", lambda: app.state.shared_state.read().read_at, timeout=10, interval=0.1)
    proxy.down()
    went_down = time.monotonic()
    wait_for("the probe to report the database down", lambda: probe.up() == 0, timeout=15, interval=0.1)
    print(f"\nprobe: 0 after {time.monotonic() - went_down:.1f} s")
    time.sleep(1)
    stuck = app.state.shared_state.read().read_at
    time.sleep(1.5)
    assert app.state.shared_state.read().read_at == stuck >= before  # no new reading while down
    proxy.up()
    wait_for("the probe to report the database up", lambda: probe.up() == 1, timeout=15, interval=0.1)
    wait_for("a new reading", lambda: app.state.shared_state.read().read_at > stuck, timeout=15, interval=0.1)
