"""The direct span encoder produces the same OTLP message as the SDK's encoder, for every
kind of span content the SDK can hold, and the exporter built on it delivers spans over gRPC."""

import time

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags, TraceState

from app.telemetry.span_encoding import FastOTLPSpanExporter, SpanEncoder
from harness.otlp_sink import OtlpSink
from harness.polling import wait_for


@pytest.fixture(autouse=True)
def sdk_enabled(monkeypatch):
    # The suite disables the SDK for in-process apps; these tests need real spans.
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)


def provider(resource: Resource, **kwargs) -> tuple[TracerProvider, InMemorySpanExporter]:
    kept = InMemorySpanExporter()
    tp = TracerProvider(resource=resource, **kwargs)
    tp.add_span_processor(SimpleSpanProcessor(kept))
    return tp, kept


def remote_parent(trace_state: TraceState | None = None) -> trace.Context:
    ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                      trace_flags=TraceFlags(1), trace_state=trace_state or TraceState())
    return trace.set_span_in_context(NonRecordingSpan(ctx))


ATTRIBUTE_VALUES = {
    "s": "plain", "empty": "", "unicode": "réseau ✓ 日本", "long": "x" * 20_000,
    "t": True, "f": False, "zero": 0, "neg": -42, "big": 2**62, "min": -(2**63),
    "pi": 3.14159, "fzero": 0.0, "fneg": -1.5,
    "strs": ("a", "", "c"), "ints": (1, -2, 3), "bools": (True, False), "floats": (0.5, -0.0), "none": (),
}


def varied_spans() -> list:
    first, kept_1 = provider(Resource({"service.name": "svc", "n": 1}, schema_url="https://example.test/r"))
    second, kept_2 = provider(Resource({"service.name": "other"}), span_limits=SpanLimits(
        max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1, max_link_attributes=1))
    scoped = first.get_tracer("scoped", "1.2.3", schema_url="https://example.test/s", attributes={"scope.attr": "v"})
    bare = first.get_tracer("")
    with scoped.start_as_current_span("server", kind=trace.SpanKind.SERVER, attributes=ATTRIBUTE_VALUES,
                                      context=remote_parent(TraceState([("vendor", "v1"), ("other", "x")]))):
        with scoped.start_as_current_span("client", kind=trace.SpanKind.CLIENT) as span:
            span.add_event("retry", {"attempt": 2, "why": "timeout"})
            span.add_event("bare")
            span.set_status(Status(StatusCode.ERROR, "boom: ünïcode"))
        with bare.start_as_current_span("", kind=trace.SpanKind.INTERNAL) as span:
            span.set_status(Status(StatusCode.OK))
        for kind in (trace.SpanKind.PRODUCER, trace.SpanKind.CONSUMER):
            scoped.start_span(f"k{kind.value}", kind=kind, links=[
                Link(SpanContext(1, 2, is_remote=True), {"l": "x"}),
                Link(SpanContext(3, 4, is_remote=False)),
            ]).end()
    limited = second.get_tracer("limited")
    span = limited.start_span("limits", attributes={"a": 1, "b": 2, "c": 3},
                              links=[Link(SpanContext(5, 6, False), {"x": 1, "y": 2}), Link(SpanContext(7, 8, False))])
    span.add_event("e1", {"p": 1, "q": 2})
    span.add_event("e2")
    span.end(end_time=time.time_ns() + 10**12)
    return [*kept_1.get_finished_spans(), *kept_2.get_finished_spans()]


def test_same_message_as_the_sdk_encoder_for_every_kind_of_content():
    spans = varied_spans()
    assert len(spans) == 6
    expected = encode_spans(spans)
    got = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    # Compare readable forms first, for a useful diff, then the messages themselves.
    assert MessageToDict(got) == MessageToDict(expected)
    assert got == expected
    assert len(got.resource_spans) == 2
    limited = got.resource_spans[1].scope_spans[0].spans[0]
    assert (limited.dropped_attributes_count, limited.dropped_events_count, limited.dropped_links_count) == (1, 1, 1)


def test_an_int_outside_int64_drops_its_attribute_as_the_sdk_does():
    """The SDK's encoder refuses such an int and drops the attribute that holds it (alone, or in
    a list or map); wrapping it would export a different number."""
    tp, kept = provider(Resource({"service.name": "svc", "too.big": 2**64}))
    tp.get_tracer("t").start_span("s", attributes={
        "max": 2**63 - 1, "min": -(2**63), "over": 2**63, "under": -(2**63) - 1,
        "in_list": (1, 2**70), "fine_list": (1, 2), "kept": "yes"}).end()
    spans = kept.get_finished_spans()
    got = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans))
    assert got == encode_spans(spans)
    span = got.resource_spans[0].scope_spans[0].spans[0]
    assert [a.key for a in span.attributes] == ["max", "min", "fine_list", "kept"]
    assert [a.key for a in got.resource_spans[0].resource.attributes] == ["service.name"]


def test_the_attribute_cache_never_changes_the_output():
    spans = varied_spans()
    encoder = SpanEncoder()
    encoder.MAX_CACHED_ATTRIBUTES = 5  # forces the cache to be cleared while encoding
    once = encoder.encode(spans)
    assert encoder.encode(spans) == once == SpanEncoder().encode(spans)
    assert ExportTraceServiceRequest.FromString(once) == encode_spans(spans)


def test_the_attribute_cache_stays_within_its_byte_bound():
    provider_, kept = provider(Resource({"service.name": "svc"}))
    tracer = provider_.get_tracer("t")
    for i in range(300):  # distinct 10 kB values: the byte bound, not the entry bound, applies
        tracer.start_span("s", attributes={"db.query.text": f"{i:05d}" + "x" * 10_000}).end()
    spans = kept.get_finished_spans()
    encoder = SpanEncoder()
    encoder.MAX_CACHED_BYTES = 200_000
    assert ExportTraceServiceRequest.FromString(encoder.encode(spans)) == encode_spans(spans)
    assert encoder._cached_bytes <= encoder.MAX_CACHED_BYTES + 2 * 10_100
    assert len(encoder._attributes) < 20


def test_negative_zero_after_zero_keeps_its_sign():
    provider_, kept = provider(Resource({"service.name": "svc"}))
    tracer = provider_.get_tracer("t")
    for value in (0.0, -0.0, float("nan")):
        tracer.start_span("s", attributes={"x": value}).end()
    spans = kept.get_finished_spans()
    got = ExportTraceServiceRequest.FromString(SpanEncoder().encode(spans)).resource_spans[0].scope_spans[0].spans
    values = [span.attributes[0].value.double_value for span in got]
    assert str(values[:2]) == "[0.0, -0.0]" and values[2] != values[2]


def test_an_empty_batch_is_an_empty_request():
    assert SpanEncoder().encode([]) == b""


@pytest.fixture
def sink():
    s = OtlpSink()
    yield s
    s.stop()


def test_the_exporter_delivers_to_a_real_otlp_receiver(sink):
    spans = varied_spans()
    exporter = FastOTLPSpanExporter(endpoint=sink.endpoint, insecure=True, timeout=5)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    wait_for("the receiver to get the spans", lambda: len(sink.spans) == len(spans), timeout=10)
    got = {s.name: s for s in sink.spans}
    assert got["server"].attributes["unicode"] == "réseau ✓ 日本"
    assert got["server"].attributes["min"] == -(2**63)
    assert got["server"].resource["service.name"] == "svc"
    assert got["client"].parent_span_id == got["server"].span_id
    assert got["server"].trace_id == "0af7651916cd43dd8448eb211c80319c"
