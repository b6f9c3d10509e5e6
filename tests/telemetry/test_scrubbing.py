"""The scrubbing step of the SDK pipeline (app/telemetry/scrubbing.py), in process: spans, span
events, status descriptions, log records and the resource. tests/telemetry/test_contract.py
proves the same on what a running service exports, in every HTTP instrumentation mode."""

from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.telemetry import build_resource
from app.telemetry.scrubbing import (
    FORBIDDEN_SERVER_SPAN_ATTRIBUTES,
    FORBIDDEN_SPAN_ATTRIBUTES,
    URL_SPAN_ATTRIBUTES,
    ScrubbingLogProcessor,
    ScrubbingSpanProcessor,
    scrub_text,
)

CONTRACT = yaml.safe_load((Path(__file__).parents[2] / "app/telemetry/contract.yaml").read_text())
TOKEN = "tok-3f9a1c"
EMAIL = "alice.reviewer@example.com"


@pytest.fixture(autouse=True)
def sdk_enabled(monkeypatch):
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)  # tests/conftest.py turns it off


def test_the_scrubbed_keys_are_the_contracts():
    assert FORBIDDEN_SPAN_ATTRIBUTES == set(CONTRACT["forbidden_span_attributes"])
    assert FORBIDDEN_SERVER_SPAN_ATTRIBUTES == set(CONTRACT["forbidden_server_span_attributes"])
    assert URL_SPAN_ATTRIBUTES == set(CONTRACT["url_span_attributes"])


@pytest.mark.parametrize(("text", "scrubbed"), [
    (f"/api/v1/reviews?severity=high&token={TOKEN}", "/api/v1/reviews"),
    (f"http://user:{TOKEN}@host:8000/a/b?token={TOKEN}#frag", "http://host:8000/a/b"),
    (f"GET /api/v1/stats?token={TOKEN} HTTP/1.1 from {EMAIL}", "GET /api/v1/stats HTTP/1.1 from [e-mail]"),
    (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer [redacted]"),
    ("HTTP 502", "HTTP 502"),
    ("is PR #12 merged?", "is PR #12 merged?"),
])
def test_free_text(text, scrubbed):
    assert scrub_text(text) == scrubbed


@pytest.fixture
def traced():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(ScrubbingSpanProcessor(SimpleSpanProcessor(exporter)))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


def test_spans_lose_client_data_query_strings_and_credentials(traced):
    tracer, exporter = traced
    with tracer.start_as_current_span("GET /api/v1/reviews", kind=SpanKind.SERVER, attributes={
        "http.route": "/api/v1/reviews",
        "url.query": f"token={TOKEN}",
        "http.url": f"http://127.0.0.1:8000/api/v1/reviews?token={TOKEN}",
        "http.target": f"/api/v1/reviews?token={TOKEN}",
        "http.user_agent": "alice-laptop/1.0",
        "user_agent.original": "alice-laptop/1.0",
        "net.peer.ip": "192.0.2.7",
        "client.address": "192.0.2.7",
        "network.peer.address": "192.0.2.7",
        "http.request.header.x_api_key": (TOKEN,),
    }) as span:
        span.add_event("exception", {"exception.message": f"failed for {EMAIL} at http://h/x?token={TOKEN}"})
        span.set_status(StatusCode.ERROR, f"code host refused Bearer {TOKEN}")
    with tracer.start_as_current_span("SELECT hitl", kind=SpanKind.CLIENT, attributes={
        "network.peer.address": "10.0.0.5", "url.full": f"https://code-host/merge?sig={TOKEN}",
    }):
        pass
    server, client = exporter.get_finished_spans()
    assert dict(server.attributes) == {
        "http.route": "/api/v1/reviews",
        "http.url": "http://127.0.0.1:8000/api/v1/reviews",
        "http.target": "/api/v1/reviews",
    }
    assert [dict(e.attributes) for e in server.events] == [{"exception.message": "failed for [e-mail] at http://h/x"}]
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "code host refused Bearer [redacted]"
    # On a client span the network peer is the server called: kept.
    assert dict(client.attributes) == {"network.peer.address": "10.0.0.5", "url.full": "https://code-host/merge"}


def test_a_clean_span_is_passed_on_as_it_ended():
    passed_on = []

    class Recorder(SimpleSpanProcessor):
        def on_end(self, span):
            passed_on.append(span)

    clean = ReadableSpan("action merge", attributes={"hitl.action": "merge", "url.full": "https://code-host/merge"})
    ScrubbingSpanProcessor(Recorder(InMemorySpanExporter())).on_end(clean)
    assert passed_on == [clean] and passed_on[0] is clean  # no copy made


def test_log_records_are_scrubbed():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(ScrubbingLogProcessor())
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("test").emit(
        body=f"GET /api/v1/reviews?token={TOKEN} from {EMAIL}",
        attributes={"client.address": "192.0.2.7", "error": f"http://u:{TOKEN}@h/x", "hitl.review.id": "r-1"},
    )
    (record,) = [r.log_record for r in exporter.get_finished_logs()]
    assert record.body == "GET /api/v1/reviews from [e-mail]"
    assert dict(record.attributes) == {"error": "http://h/x", "hitl.review.id": "r-1"}


def test_the_resource_is_scrubbed(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"collector.url=http://u:{TOKEN}@h:4317/x?k={TOKEN},"
                                                   "process.command_line=python -m app")
    resource = build_resource("hitl-review", "test")
    assert resource.attributes["collector.url"] == "http://h:4317/x"
    assert "process.command_line" not in resource.attributes
    assert TOKEN not in str(dict(resource.attributes))


def test_a_scrubbed_copy_keeps_the_dropped_counts():
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2, max_events=1))
    provider.add_span_processor(ScrubbingSpanProcessor(SimpleSpanProcessor(exporter)))
    with provider.get_tracer("test").start_as_current_span("GET /x", kind=SpanKind.SERVER) as span:
        span.set_attributes({"http.route": "/x", "client.address": "192.0.2.7", "http.request.method": "GET"})
        span.add_event("first")
        span.add_event("second", {"exception.message": f"token at /x?token={TOKEN}"})
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes) == {"http.request.method": "GET"}  # the oldest went over the limit
    assert exported.dropped_attributes == 1 and exported.dropped_events == 1
    assert [e.name for e in exported.events] == ["second"]
    assert dict(exported.events[0].attributes) == {"exception.message": "token at /x"}
