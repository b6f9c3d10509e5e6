"""Shared fixtures: each API test runs twice, on SQLite with the in-process cache and on
PostgreSQL with Redis (TEST_POSTGRES_URL / TEST_REDIS_URL, started by scripts/test-services.sh).
Each test leaves the database as it found it: the rows it wrote are deleted afterwards."""

import functools
import os
import time
from pathlib import Path
from typing import NoReturn

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

os.environ.setdefault("OTEL_SDK_DISABLED", "true")  # in-process apps: no exporters

from app.auth.models import ApiKey, Role  # noqa: E402
from app.auth.service import create_key  # noqa: E402
from app.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.reviews.models import Decision, Review  # noqa: E402
from harness.databases import fresh_postgres_database  # noqa: E402
from harness.code_host import CodeHostServer  # noqa: E402

BACKENDS = ["sqlite", "postgresql"]


# `scripts/test.sh --lanes` (.ci/run) runs two pytest processes side by side: `-m lane_engine` and
# `-m "not lane_engine"`. What shares a running system stays in one lane, in its order.
# lane_engine: everything on the Docker engine (the compose tests, both compose stacks), and
# tests that start only processes of their own on free ports (alerting, telemetry, Kubernetes,
# the benchmark smoke tests on their own port block), to even the lanes out. The other lane:
# both native stacks (tests/e2e's at port offset 100, tests/ha's at 300) and the rest. The
# lanes' ports, compose projects and run directories are apart.
ENGINE_LANE_PATHS = ("tests/compose/", "tests/ha/test_compose_shape.py", "tests/alerting/", "tests/telemetry/",
                     "tests/kubernetes/", "tests/test_benchmarks.py")


def in_engine_lane(nodeid: str) -> bool:
    path = nodeid.split("::", 1)[0]
    return path.startswith(ENGINE_LANE_PATHS) or (path.startswith("tests/e2e/") and "[compose" in nodeid)


def pytest_itemcollected(item):
    if in_engine_lane(item.nodeid):
        item.add_marker(pytest.mark.lane_engine)


# Late binaries: `scripts/test.sh` builds the targets only a few tests need (Kubernetes, the load
# generators) in the background at idle CPU priority while the suite runs, so a cold machine does
# not wait for them first. It names them in HITL_LATE_BUILD_TARGETS and writes the build's exit
# status to HITL_LATE_BUILD_STATUS when it is done (its output: HITL_LATE_BUILD_LOG). A test
# declares what it needs with @pytest.mark.needs_build(target, ...); those that need a late target
# run last and wait for the build there.
LATE_BUILD_TIMEOUT_SECONDS = 3600


def late_targets() -> set[str]:
    return set(os.environ.get("HITL_LATE_BUILD_TARGETS", "").split()) if os.environ.get("HITL_LATE_BUILD_STATUS") else set()


def needs_late_build(item) -> bool:
    marker = item.get_closest_marker("needs_build")
    return bool(marker and late_targets() & set(marker.args))


def pytest_collection_modifyitems(config, items):
    if late_targets():
        items[:] = [i for i in items if not needs_late_build(i)] + [i for i in items if needs_late_build(i)]


@functools.cache
def late_build_status() -> str:
    """The background build's exit status, once it is done (waits for it)."""
    status_file = Path(os.environ["HITL_LATE_BUILD_STATUS"])
    deadline = time.monotonic() + LATE_BUILD_TIMEOUT_SECONDS
    while not status_file.exists() and time.monotonic() < deadline:
        time.sleep(2)
    return status_file.read_text().strip() if status_file.exists() else "timed out"


def wait_for_late_build() -> None:
    """Blocks until the background build is done; fails the test with its log if it failed."""
    if (status := late_build_status()) != "0":
        log = Path(os.environ.get("HITL_LATE_BUILD_LOG", "/dev/null"))
        tail = log.read_text()[-4000:] if log.is_file() else ""
        pytest.fail(f"the background build of {sorted(late_targets())} failed ({status}):\n{tail}")


def pytest_runtest_setup(item):
    if needs_late_build(item):
        wait_for_late_build()


def missing_prerequisite(message: str) -> NoReturn:
    """Fail under CI (and scripts/test.sh, which exports CI=true: its run must prove everything);
    skip in a bare pytest run."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message}; run the tests through scripts/test.sh")
    pytest.skip(message)


def _require(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        missing_prerequisite(f"{var} is not set (scripts/test-services.sh start prints it)")
    return value


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    return _require("TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _require("TEST_REDIS_URL")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request, tmp_path_factory) -> dict:
    """The database URL (migrated) and cache URL of one backend pair."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'hitl.db'}"
        cache = None
    else:
        url = fresh_postgres_database(request.getfixturevalue("postgres_admin_url"))
        cache = request.getfixturevalue("redis_url")
    upgrade(url)
    return {"name": request.param, "database_url": url, "redis_url": cache}


def make_settings(backend: dict, **overrides) -> Settings:
    values = {
        "APP_ENV": "test",
        "DATABASE_URL": backend["database_url"],
        "REDIS_URL": backend["redis_url"],
        "ACTION_RETRY_ENABLED": False,
        "DB_POOL_TIMEOUT_SECONDS": 2,
        "MAX_BODY_BYTES": 64 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def code_host():
    server = CodeHostServer()
    yield server
    server.close()


@pytest.fixture
def settings(backend, code_host) -> Settings:
    return make_settings(backend, CODE_HOST_URL=code_host.url, CODE_HOST_TOKEN="test-code-host-token")


@pytest.fixture
def app(settings):
    application = create_app(settings)
    yield application
    with application.state.db.sessionmaker() as session:
        for model in (Decision, Review, ApiKey):
            session.execute(delete(model))
        session.commit()
    application.state.cache.delete("hitl:stats:v1")


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def keys(app) -> dict[str, str]:
    """A token per role."""
    tokens = {}
    with app.state.db.sessionmaker() as session:
        for role in Role:
            _, tokens[role.value] = create_key(session=session, name=f"test-{role.value}", role=role)
    return tokens


@pytest.fixture
def as_role(client, keys):
    """as_role('reviewer').get(...): the client with that role's key."""

    class _As:
        def __init__(self, role):
            self.headers = {"X-API-Key": keys[role]}

        def __getattr__(self, method):
            def call(url, **kw):
                headers = {**self.headers, **kw.pop("headers", {})}
                return getattr(client, method)(url, headers=headers, **kw)

            return call

    return _As
