"""Readiness under overload: with every request thread and every pooled database connection busy,
/health/ready still answers 200 at once (a busy replica stays in rotation); with the database
really gone it answers 503 within its own bound."""

import threading
import time

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from sqlalchemy import delete

from app.auth.models import ApiKey, Role
from app.auth.service import create_key
from app.health.readiness import READINESS_TIMEOUT_SECONDS
from app.main import create_app
from tests.conftest import make_settings
from harness.app_process import free_port

REQUEST_THREADS = 2
POOL_TIMEOUT_SECONDS = 6  # longer than readiness may take: a check that waited for the pool fails
ANSWER_BOUND_SECONDS = READINESS_TIMEOUT_SECONDS + 1


@pytest.fixture
def saturated(backend):
    """An app whose request thread pool and request database pool are both held by requests
    that wait for the database."""
    app = create_app(make_settings(backend, DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT_SECONDS=POOL_TIMEOUT_SECONDS))
    with app.state.db.sessionmaker() as session:
        _, key = create_key(session=session, name="readiness-viewer", role=Role.viewer)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/health/ready").status_code == 200

        def shrink_thread_pool():
            anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS

        client.portal.call(shrink_thread_pool)
        held = app.state.db.engine.connect()  # the pool's only connection, as a slow request would
        held.exec_driver_sql("SELECT 1")
        waiting = [threading.Thread(target=client.get, args=("/api/v1/reviews",), kwargs={"headers": {"X-API-Key": key}})
                   for _ in range(REQUEST_THREADS)]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)  # the requests hold the threads, waiting for the pool
        try:
            yield client, app
        finally:
            held.close()
            for thread in waiting:
                thread.join()
    with app.state.db.sessionmaker() as session:
        session.execute(delete(ApiKey))
        session.commit()


def test_a_saturated_replica_stays_ready(saturated):
    client, app = saturated
    assert app.state.db.engine.pool.checkedout() == 1
    start = time.monotonic()
    ready = client.get("/health/ready")
    took = time.monotonic() - start
    assert ready.status_code == 200, ready.text
    assert ready.json()["database"] == "ok"
    assert took < ANSWER_BOUND_SECONDS, f"readiness took {took:.1f}s under load"


def test_readiness_is_503_quickly_without_a_database():
    url = f"postgresql://hitl@127.0.0.1:{free_port()}/hitl"
    app = create_app(make_settings({"database_url": url, "redis_url": None}, DB_CONNECT_TIMEOUT_SECONDS=2))
    with TestClient(app, raise_server_exceptions=False) as client:
        start = time.monotonic()
        ready = client.get("/health/ready")
        took = time.monotonic() - start
    assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
    assert took < ANSWER_BOUND_SECONDS
