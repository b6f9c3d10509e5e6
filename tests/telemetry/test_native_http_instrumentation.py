"""HITL_HTTP_INSTRUMENTATION=fastapi: FastAPI's built-in server spans replace the contrib ones and
carry what the collector's span metrics need (route, method, status), one server span per
request, health probes untraced."""

import uuid

import httpx

from app.auth.models import Role
from harness.app_process import AppProcess
from harness.databases import fresh_postgres_database, migrated_with_keys
from harness.otlp_sink import OtlpSink
from harness.polling import wait_for

SERVER = 2


def test_fastapi_native_server_spans(tmp_path, postgres_admin_url):
    sink = OtlpSink()
    database_url = fresh_postgres_database(postgres_admin_url)
    key = migrated_with_keys(database_url, {"native-viewer": Role.viewer})["native-viewer"]
    app = AppProcess(env={
        "DATABASE_URL": database_url,
        "OTEL_SERVICE_NAME": "hitl-review",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "HITL_HTTP_INSTRUMENTATION": "fastapi",
    }, log_path=tmp_path / "app.log")
    try:
        assert httpx.get(f"{app.url}/api/v1/reviews", headers={"X-API-Key": key}).status_code == 200
        assert httpx.get(f"{app.url}/api/v1/reviews/{uuid.uuid4()}", headers={"X-API-Key": key}).status_code == 404
        assert httpx.get(f"{app.url}/api/v1/stats").status_code == 401
        servers = wait_for("three server spans",
                           lambda: (s := [x for x in sink.spans if x.kind == SERVER]) and len(s) >= 3 and s)
    finally:
        app.stop()
        sink.stop()
    got = sorted((s.name, s.attributes["http.route"], s.attributes["http.request.method"],
                  s.attributes["http.response.status_code"], s.scope) for s in servers)
    assert got == [
        ("GET /api/v1/reviews", "/api/v1/reviews", "GET", 200, "fastapi"),
        ("GET /api/v1/reviews/{review_id}", "/api/v1/reviews/{review_id}", "GET", 404, "fastapi"),
        ("GET /api/v1/stats", "/api/v1/stats", "GET", 401, "fastapi"),
    ]
    assert not any(s.attributes.get("url.path", "").startswith("/health") for s in sink.spans)
