"""The database probe behind hitl.database.up, on both backends: it answers 1 with the database,
0 quickly without it, names the backend and the pool without credentials."""

import time

from app.health.probe import DatabaseProbe
from harness.app_process import free_port
from tests.conftest import make_settings


def test_the_probe_answers_on_each_backend(backend):
    probe = DatabaseProbe(make_settings(backend), interval_seconds=60)
    try:
        assert probe.up() is None  # nothing is reported before the first probe
        before = time.time()
        assert probe.probe() == 1 and probe.up() == 1 and probe.probed_at >= before
        assert probe.system == backend["name"]
        if backend["name"] == "postgresql":
            assert probe.pool_name.count(":") == 1 and "/" in probe.pool_name  # host:port/database
    finally:
        probe.close()


def test_an_unreachable_database_is_0_within_the_connect_timeout():
    url = f"postgresql://hitl:secret-password@127.0.0.1:{free_port()}/hitl"
    probe = DatabaseProbe(make_settings({"database_url": url, "redis_url": None}, DB_CONNECT_TIMEOUT_SECONDS=2),
                          interval_seconds=60)
    try:
        start = time.monotonic()
        assert probe.probe() == 0
        assert time.monotonic() - start < 3
        assert "secret-password" not in probe.pool_name
    finally:
        probe.close()


def test_the_application_can_start_twice(app):
    """Test clients (and schemathesis) run the lifespan more than once: the readers restart."""
    from fastapi.testclient import TestClient

    for _ in range(2):
        with TestClient(app) as client:
            assert client.get("/health/ready").status_code == 200
            assert app.state.database_probe.probe() == 1
