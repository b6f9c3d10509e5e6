"""Finished spans to an OTLP `ExportTraceServiceRequest`, written straight to protobuf bytes.

Why: the SDK's encoder builds a protobuf object per span, attribute and value from Python, about
35 µs per span of this service (docs/benchmarks.md) — a third of the telemetry's CPU per
request. Almost every attribute repeats from span to span (the same SQL text, route, method,
server address), so this encoder writes each attribute once, keeps its bytes, and then only
concatenates. The result is the same message (tests/telemetry/test_span_encoding.py compares it
with the SDK's encoder field by field); the exporter's transport, retries, headers, TLS and
compression stay the SDK's own (`FastOTLPSpanExporter` only replaces the translation step).

Wire format: https://protobuf.dev/programming-guides/encoding/ ; field numbers from
opentelemetry-proto's trace.proto, common.proto and resource.proto (v1).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

log = logging.getLogger(__name__)

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack
_UINT64 = (1 << 64) - 1


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = [_varint_slow(i) for i in range(1 << 14)]


def _varint(n: int) -> bytes:
    return _SMALL_VARINTS[n] if n < 16384 else _varint_slow(n)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); `tag` is the field's encoded key."""
    n = len(payload)
    return tag + (_SMALL_VARINTS[n] if n < 16384 else _varint_slow(n)) + payload


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


# Field keys, named message_field.
ANY_STRING, ANY_BOOL, ANY_INT, ANY_DOUBLE = _tag(1, 2), _tag(2, 0), _tag(3, 0), _tag(4, 1)
ANY_ARRAY, ANY_KVLIST, ANY_BYTES = _tag(5, 2), _tag(6, 2), _tag(7, 2)
LIST_VALUES = _tag(1, 2)  # ArrayValue.values and KeyValueList.values
KV_KEY, KV_VALUE = _tag(1, 2), _tag(2, 2)
SPAN_TRACE_ID, SPAN_SPAN_ID, SPAN_TRACE_STATE, SPAN_PARENT = _tag(1, 2), _tag(2, 2), _tag(3, 2), _tag(4, 2)
SPAN_NAME, SPAN_KIND, SPAN_START, SPAN_END = _tag(5, 2), _tag(6, 0), _tag(7, 1), _tag(8, 1)
SPAN_ATTRIBUTE, SPAN_DROPPED_ATTRIBUTES, SPAN_EVENT, SPAN_DROPPED_EVENTS = _tag(9, 2), _tag(10, 0), _tag(11, 2), _tag(12, 0)
SPAN_LINK, SPAN_DROPPED_LINKS, SPAN_STATUS, SPAN_FLAGS = _tag(13, 2), _tag(14, 0), _tag(15, 2), _tag(16, 5)
EVENT_TIME, EVENT_NAME, EVENT_ATTRIBUTE, EVENT_DROPPED_ATTRIBUTES = _tag(1, 1), _tag(2, 2), _tag(3, 2), _tag(4, 0)
LINK_TRACE_ID, LINK_SPAN_ID, LINK_ATTRIBUTE, LINK_DROPPED_ATTRIBUTES, LINK_FLAGS = (
    _tag(1, 2), _tag(2, 2), _tag(4, 2), _tag(5, 0), _tag(6, 5),
)
STATUS_MESSAGE, STATUS_CODE = _tag(2, 2), _tag(3, 0)
SCOPE_NAME, SCOPE_VERSION, SCOPE_ATTRIBUTE = _tag(1, 2), _tag(2, 2), _tag(3, 2)
RESOURCE_ATTRIBUTE = _tag(1, 2)
SCOPE_SPANS_SCOPE, SCOPE_SPANS_SPAN, SCOPE_SPANS_SCHEMA_URL = _tag(1, 2), _tag(2, 2), _tag(3, 2)
RESOURCE_SPANS_RESOURCE, RESOURCE_SPANS_SCOPE_SPANS, RESOURCE_SPANS_SCHEMA_URL = _tag(1, 2), _tag(2, 2), _tag(3, 2)
REQUEST_RESOURCE_SPANS = _tag(1, 2)

# SpanFlags: the context-has-is-remote bit is always set; the is-remote bit when the parent
# (or linked) context came from another process.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_FLAGS_LOCAL_PARENT = SPAN_FLAGS + _fixed32(_HAS_IS_REMOTE)
_FLAGS_REMOTE_PARENT = SPAN_FLAGS + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE)
# SpanKind: the API's INTERNAL..CONSUMER are 0..4, OTLP's are 1..5.
_KIND = [SPAN_KIND + _varint(k + 1) for k in range(5)]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _any_value(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bool):
        return ANY_BOOL + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _len_field(ANY_STRING, value.encode("utf-8"))
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            # As the SDK's encoder: the attribute holding it is dropped (logged), never wrapped.
            raise ValueError(f"{value} does not fit OTLP's int64")
        return ANY_INT + _varint(value & _UINT64)
    if isinstance(value, float):
        return ANY_DOUBLE + _double(value)
    if isinstance(value, bytes):
        return _len_field(ANY_BYTES, value)
    if isinstance(value, Sequence):
        return _len_field(ANY_ARRAY, b"".join(_len_field(LIST_VALUES, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _len_field(ANY_KVLIST, b"".join(_len_field(LIST_VALUES, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode a {type(value).__name__} attribute value")


def _key_value(key: str, value) -> bytes:
    return _len_field(KV_KEY, key.encode("utf-8")) + _len_field(KV_VALUE, _any_value(value))


class SpanEncoder:
    """Encodes span batches; remembers the bytes of recurring attributes, resources and scopes.

    Safe to share between threads: each cache access is a single dict operation, and a lost
    race only encodes an attribute twice.
    """

    # Bounds of the attribute cache: high-cardinality values (paths with ids) churn it, and it is
    # cleared whenever either bound is reached (the value is held twice: key and bytes).
    MAX_CACHED_ATTRIBUTES = 4096
    MAX_CACHED_BYTES = 2 * 1024 * 1024

    def __init__(self) -> None:
        self._attributes: dict[tuple, bytes] = {}
        self._cached_bytes = 0
        self._resources: dict[object, tuple[bytes, bytes]] = {}
        self._scopes: dict[object, tuple[bytes, bytes]] = {}

    def _attribute(self, tag: bytes, key: str, value) -> bytes:
        kind = type(value)
        # Floats are left out: 0.0 == -0.0 (and NaN != NaN) would make a cache hit wrong (or useless).
        if kind is str or kind is int or kind is bool:
            cache_key = (tag, key, kind, value)
            encoded = self._attributes.get(cache_key)
            if encoded is None:
                encoded = _len_field(tag, _key_value(key, value))
                if len(self._attributes) >= self.MAX_CACHED_ATTRIBUTES or self._cached_bytes >= self.MAX_CACHED_BYTES:
                    self._attributes.clear()
                    self._cached_bytes = 0
                self._attributes[cache_key] = encoded
                self._cached_bytes += 2 * len(encoded)
            return encoded
        return _len_field(tag, _key_value(key, value))

    def _attributes_of(self, tag: bytes, attributes) -> list[bytes]:
        out = []
        if attributes:
            for key, value in attributes.items():
                try:
                    out.append(self._attribute(tag, key, value))
                except Exception as exc:  # noqa: BLE001 - one bad attribute must not lose the batch
                    log.warning("attribute %s not exported: %s", key, exc)
        return out

    def _resource(self, resource) -> tuple[bytes, bytes]:
        encoded = self._resources.get(resource)
        if encoded is None:
            body = b"".join(self._attributes_of(RESOURCE_ATTRIBUTE, resource.attributes))
            encoded = _len_field(RESOURCE_SPANS_RESOURCE, body)
            if resource.schema_url:
                # Kept apart: it closes the ResourceSpans message after its scope spans.
                encoded = (encoded, _len_field(RESOURCE_SPANS_SCHEMA_URL, resource.schema_url.encode()))
            else:
                encoded = (encoded, b"")
            self._resources[resource] = encoded
        return encoded

    def _scope(self, scope) -> tuple[bytes, bytes]:
        encoded = self._scopes.get(scope)
        if encoded is None:
            if scope is None:
                encoded = (_len_field(SCOPE_SPANS_SCOPE, b""), b"")
            else:
                parts = [_len_field(SCOPE_NAME, scope.name.encode())] if scope.name else []
                if scope.version:
                    parts.append(_len_field(SCOPE_VERSION, scope.version.encode()))
                parts += self._attributes_of(SCOPE_ATTRIBUTE, scope.attributes)
                schema = _len_field(SCOPE_SPANS_SCHEMA_URL, scope.schema_url.encode()) if scope.schema_url else b""
                encoded = (_len_field(SCOPE_SPANS_SCOPE, b"".join(parts)), schema)
            self._scopes[scope] = encoded
        return encoded

    def _span(self, span) -> bytes:
        context = span.context
        parts = [
            SPAN_TRACE_ID + b"\x10" + context.trace_id.to_bytes(16, "big"),
            SPAN_SPAN_ID + b"\x08" + context.span_id.to_bytes(8, "big"),
        ]
        trace_state = context.trace_state
        if trace_state:
            parts.append(_len_field(SPAN_TRACE_STATE, ",".join(f"{k}={v}" for k, v in trace_state.items()).encode()))
        parent = span.parent
        if parent is not None:
            parts.append(SPAN_PARENT + b"\x08" + parent.span_id.to_bytes(8, "big"))
        if span.name:
            parts.append(_len_field(SPAN_NAME, span.name.encode("utf-8")))
        parts.append(_KIND[span.kind.value])
        if span.start_time:
            parts.append(SPAN_START + _fixed64(span.start_time))
        if span.end_time:
            parts.append(SPAN_END + _fixed64(span.end_time))
        parts += self._attributes_of(SPAN_ATTRIBUTE, span.attributes)
        if span.dropped_attributes:
            parts.append(SPAN_DROPPED_ATTRIBUTES + _varint(span.dropped_attributes))
        for event in span.events:
            body = [EVENT_TIME + _fixed64(event.timestamp)] if event.timestamp else []
            if event.name:
                body.append(_len_field(EVENT_NAME, event.name.encode("utf-8")))
            body += self._attributes_of(EVENT_ATTRIBUTE, event.attributes)
            if event.dropped_attributes:
                body.append(EVENT_DROPPED_ATTRIBUTES + _varint(event.dropped_attributes))
            parts.append(_len_field(SPAN_EVENT, b"".join(body)))
        if span.dropped_events:
            parts.append(SPAN_DROPPED_EVENTS + _varint(span.dropped_events))
        for link in span.links:
            body = [
                LINK_TRACE_ID + b"\x10" + link.context.trace_id.to_bytes(16, "big"),
                LINK_SPAN_ID + b"\x08" + link.context.span_id.to_bytes(8, "big"),
            ]
            body += self._attributes_of(LINK_ATTRIBUTE, link.attributes)
            if link.dropped_attributes:
                body.append(LINK_DROPPED_ATTRIBUTES + _varint(link.dropped_attributes))
            body.append(LINK_FLAGS + _fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if link.context.is_remote else 0)))
            parts.append(_len_field(SPAN_LINK, b"".join(body)))
        if span.dropped_links:
            parts.append(SPAN_DROPPED_LINKS + _varint(span.dropped_links))
        status = span.status
        status_body = b""
        if status.description:
            status_body = _len_field(STATUS_MESSAGE, status.description.encode("utf-8"))
        if status.status_code.value:
            status_body += STATUS_CODE + _varint(status.status_code.value)
        parts.append(_len_field(SPAN_STATUS, status_body))
        parts.append(_FLAGS_REMOTE_PARENT if parent is not None and parent.is_remote else _FLAGS_LOCAL_PARENT)
        return _len_field(SCOPE_SPANS_SPAN, b"".join(parts))

    def encode(self, spans) -> bytes:
        """The serialized ExportTraceServiceRequest for `spans`, grouped by resource and scope."""
        grouped: dict[object, dict[object, list[bytes]]] = {}
        for span in spans:
            grouped.setdefault(span.resource, {}).setdefault(span.instrumentation_scope or None, []).append(
                self._span(span)
            )
        out = []
        for resource, scopes in grouped.items():
            resource_head, resource_tail = self._resource(resource)
            body = [resource_head]
            for scope, encoded_spans in scopes.items():
                scope_head, scope_tail = self._scope(scope)
                body.append(_len_field(RESOURCE_SPANS_SCOPE_SPANS, scope_head + b"".join(encoded_spans) + scope_tail))
            body.append(resource_tail)
            out.append(_len_field(REQUEST_RESOURCE_SPANS, b"".join(body)))
        return b"".join(out)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/gRPC span exporter with the translation step done by `SpanEncoder`.

    The bytes are parsed back into the request message by protobuf's C implementation (a few
    µs per batch), so the channel, retries, timeouts, headers and compression are untouched.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = SpanEncoder()

    def _translate_data(self, data) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(self._encoder.encode(data))
