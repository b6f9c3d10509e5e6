"""Admission control (app/admission.py): a process works on at most APP_MAX_IN_FLIGHT API
requests; the rest get 503 + Retry-After at once, health probes never, and what it refuses is
in its telemetry like any other error."""

import asyncio
import threading
import time

import httpx
import pytest
from starlette.responses import PlainTextResponse

from app.admission import InFlightLimit
from app.auth.models import Role
from harness.app_process import AppProcess
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.otlp_sink import OtlpSink
from harness.polling import wait_for
from tests.conftest import make_settings

SERVER = 2


@pytest.fixture
def settings(backend, code_host):
    # Every API request waits 1.5 s (an injected delay): two of them fill the bound of 2.
    return make_settings(backend, CODE_HOST_URL=code_host.url, CODE_HOST_TOKEN="test-code-host-token",
                         APP_MAX_IN_FLIGHT=2, FAULT_DELAY_RATIO=1.0, FAULT_DELAY_SECONDS=1.5)


def admission(app) -> InFlightLimit:
    """The InFlightLimit in the app's middleware stack (built when the client started it)."""
    layer = app.middleware_stack
    while not isinstance(layer, InFlightLimit):
        layer = layer.app
    return layer


def in_threads(call, n: int) -> tuple[list, list[threading.Thread]]:
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(call())) for _ in range(n)]
    for t in threads:
        t.start()
    return results, threads


def test_requests_beyond_the_bound_are_refused_at_once_and_the_others_served(app, client, keys):
    headers = {"X-API-Key": keys["viewer"]}
    slow, threads = in_threads(lambda: client.get("/api/v1/reviews", headers=headers), 2)
    wait_for("both requests in progress", lambda: admission(app).in_flight == 2, timeout=5)

    started = time.monotonic()
    refused = client.get("/api/v1/stats", headers=headers)
    assert time.monotonic() - started < 1.0, "refused at once, not queued behind the 1.5 s requests"
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert "overloaded" in refused.json()["detail"]
    # Probes pass while the process is full: a busy process is neither dead nor to be restarted.
    assert client.get("/health/live").status_code == 200

    for t in threads:
        t.join(10)
    assert [r.status_code for r in slow] == [200, 200]
    assert client.get("/api/v1/stats", headers=headers).status_code == 200  # room again


def test_the_bound_is_released_when_a_request_fails_and_zero_turns_it_off():
    async def app(scope, receive, send):
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await asyncio.sleep(0.05)
        await PlainTextResponse("ok")(scope, receive, send)

    async def run(limit: int, paths: list[str]) -> list[int]:
        limited = InFlightLimit(app, limit)
        transport = httpx.ASGITransport(app=limited, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            codes = [r.status_code for r in await asyncio.gather(*(c.get(p) for p in paths))]
        assert limited.in_flight == 0
        return codes

    assert sorted(asyncio.run(run(1, ["/boom", "/boom", "/boom"]))) == [500, 500, 500]
    assert sorted(asyncio.run(run(2, ["/a"] * 5))) == [200, 200, 503, 503, 503]
    assert asyncio.run(run(0, ["/a"] * 5)) == [200] * 5


@pytest.mark.parametrize("instrumentation", ["contrib", "fastapi"])
def test_a_refused_request_is_a_503_server_span(tmp_path, postgres_admin_url, instrumentation):
    """In the real process the refusal happens inside the instrumentation (either kind of server
    span): the span metrics count it as an error, so the availability SLO sees an overload."""
    url = fresh_postgres_database(postgres_admin_url)
    key = migrated_with_keys(url, {"viewer": Role.viewer})["viewer"]
    sink = OtlpSink()
    app = AppProcess(env={"DATABASE_URL": url, "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
                          "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SERVICE_NAME": "hitl-review",
                          "HITL_HTTP_INSTRUMENTATION": instrumentation, "APP_MAX_IN_FLIGHT": "1", "FAULT_DELAY_RATIO": "1", "FAULT_DELAY_SECONDS": "3"},
                     log_path=tmp_path / "app.log")
    try:
        with httpx.Client(base_url=app.url, timeout=10, headers={"X-API-Key": key}) as c:
            slow, threads = in_threads(lambda: c.get("/api/v1/reviews"), 1)
            time.sleep(1)  # it is in its 3 s delay
            assert c.get("/api/v1/reviews").status_code == 503
            threads[0].join(10)
            assert slow[0].status_code == 200

        def server_codes() -> list:
            return sorted(s.attributes.get("http.response.status_code") for s in sink.spans if s.kind == SERVER)

        wait_for("both server spans to be exported", lambda: server_codes() == [200, 503], timeout=10)
        refused = next(s for s in sink.spans if s.kind == SERVER and s.attributes["http.response.status_code"] == 503)
        # The contrib instrumentation finds the route itself; FastAPI's own spans learn it from the
        # router, which a refused request never reaches (counted for the service, not a route).
        route = "/api/v1/reviews" if instrumentation == "contrib" else None
        assert refused.attributes.get("http.route") == route, refused
    finally:
        app.stop()
        sink.stop()
