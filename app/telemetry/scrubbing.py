"""Personal data and credentials out of every exported span, log record and resource.

One place, in the SDK's pipeline, whatever produced the telemetry: the contrib ASGI
instrumentation and FastAPI's own server spans (HITL_HTTP_INSTRUMENTATION) both record the query
string, and under OTEL_SEMCONV_STABILITY_OPT_IN=http/dup the contrib one adds the old
convention's copies (http.url and http.target with the query, http.user_agent, net.peer.ip)
that no request hook of a single instrumentation sees. So finished spans pass through
`ScrubbingSpanProcessor` on their way to the exporter, log records through
`ScrubbingLogProcessor`, and the resource is scrubbed once when it is built.

What goes (app/telemetry/contract.yaml lists the same keys; tests/telemetry/test_scrubbing.py
holds the two together):
- attributes naming the client (address, port, user agent) or the query string;
- on server spans, the network peer: there it is the client;
- captured request headers (http.request.header.*): they would carry the API key;
- from URL-valued attributes, the query string, fragment and user:password;
- from free text (status descriptions, event attributes such as exception.message, log bodies
  and attributes, resource values), the same parts of any URL or request target in it, and
  e-mail addresses and the token after `Bearer`/`Basic`.

A span that needs none of this is passed on as it is, so the common case costs a few set
lookups per span.
"""

from __future__ import annotations

import re
from itertools import repeat

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanKind, Status
from opentelemetry.util.types import Attributes

FORBIDDEN_SPAN_ATTRIBUTES = frozenset({
    "client.address", "client.port", "user_agent.original", "user_agent.synthetic.type", "url.query",
    "http.user_agent", "http.client_ip", "net.peer.ip", "net.sock.peer.addr", "net.sock.peer.port",
})
FORBIDDEN_SERVER_SPAN_ATTRIBUTES = frozenset({"network.peer.address", "network.peer.port", "net.peer.name", "net.peer.port"})
URL_SPAN_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target"})
CAPTURED_REQUEST_HEADER_PREFIX = "http.request.header."
# Resource attributes of the process detector that repeat the command line (a URL with a
# password given as an argument).
FORBIDDEN_RESOURCE_ATTRIBUTES = frozenset({"process.command", "process.command_line", "process.command_args"})

# An absolute URL: its scheme, user:password@, the rest, and the query string or fragment.
_ABSOLUTE_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/?#@'\"<>]*@)?([^\s?#'\"<>]*)(?:[?#][^\s'\"<>]*)?")
# A request target (/path?query) standing on its own, as in a request line.
_REQUEST_TARGET = re.compile(r"(?<![\w.:/])(/[^\s?#'\"<>]*)[?#][^\s'\"<>]*")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_AUTHORIZATION = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_SUSPECT = re.compile(r"[?#@]|://|bearer|basic", re.IGNORECASE)


def scrub_text(text: str) -> str:
    """`text` without the query strings, fragments and credentials of the URLs in it, e-mail
    addresses, and the token after Bearer/Basic."""
    if not _SUSPECT.search(text):
        return text
    text = _ABSOLUTE_URL.sub(r"\1\2", text)
    text = _REQUEST_TARGET.sub(r"\1", text)
    text = _EMAIL.sub("[e-mail]", text)
    return _AUTHORIZATION.sub(r"\1 [redacted]", text)


def _scrub_value(value):
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(v) for v in value)
    return value


def _forbidden(key: str, server: bool) -> bool:
    return (
        key in FORBIDDEN_SPAN_ATTRIBUTES
        or (server and key in FORBIDDEN_SERVER_SPAN_ATTRIBUTES)
        or key.startswith(CAPTURED_REQUEST_HEADER_PREFIX)
    )


def _needs_scrubbing(attributes, server: bool) -> bool:
    # Set operations and map() over the keys: this runs for every span.
    keys = attributes.keys()
    if keys & FORBIDDEN_SPAN_ATTRIBUTES or (server and keys & FORBIDDEN_SERVER_SPAN_ATTRIBUTES):
        return True
    if any(map(str.startswith, keys, repeat(CAPTURED_REQUEST_HEADER_PREFIX))):
        return True
    return any(
        isinstance(value := attributes[key], str) and scrub_text(value) != value
        for key in keys & URL_SPAN_ATTRIBUTES
    )


def scrub_span_attributes(attributes: Attributes, *, server: bool) -> Attributes:
    """The attributes without the forbidden ones, URLs stripped; the same object if unchanged."""
    if not attributes or not _needs_scrubbing(attributes, server):
        return attributes
    return {
        key: scrub_text(value) if key in URL_SPAN_ATTRIBUTES and isinstance(value, str) else value
        for key, value in attributes.items()
        if not _forbidden(key, server)
    }


def scrub_free_attributes(attributes: Attributes) -> Attributes:
    """Attributes whose values are free text (events, log records, the resource)."""
    if not attributes:
        return attributes
    scrubbed = {key: _scrub_value(value) for key, value in attributes.items() if not _forbidden(key, False)}
    return attributes if scrubbed == dict(attributes) else scrubbed


def scrub_resource_attributes(attributes: Attributes) -> dict:
    return {k: v for k, v in (scrub_free_attributes(attributes) or {}).items() if k not in FORBIDDEN_RESOURCE_ATTRIBUTES}


def _scrub_event(event: Event) -> Event:
    attributes = scrub_free_attributes(event.attributes)
    name = scrub_text(event.name)
    if attributes is event.attributes and name == event.name:
        return event
    return Event(name, attributes, event.timestamp)


def scrubbed_span(span: ReadableSpan) -> ReadableSpan:
    """`span` itself if it carries nothing to remove, else a copy without it."""
    original_attributes, original_events, status = span.attributes, span.events, span.status  # each a new view
    attributes = scrub_span_attributes(original_attributes, server=span.kind is SpanKind.SERVER)
    events = [_scrub_event(e) for e in original_events] if original_events else []
    description = scrub_text(status.description) if status.description else status.description
    if (
        attributes is original_attributes
        and (not events or all(new is old for new, old in zip(events, original_events, strict=True)))
        and description == status.description
    ):
        return span
    # Plain containers unless the span had to drop some (only bounded ones carry that count):
    # building BoundedAttributes validates every value again, ~100 times the cost of a dict.
    kept_attributes, kept_events = attributes, events
    if span.dropped_attributes:
        kept_attributes = BoundedAttributes(attributes=attributes, immutable=True)
        kept_attributes.dropped = span.dropped_attributes
    if span.dropped_events:
        kept_events = BoundedList(None)
        kept_events.extend(events)
        kept_events.dropped = span.dropped_events
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=kept_attributes,
        events=kept_events,
        links=span.links,
        kind=span.kind,
        status=status if description == status.description else Status(status.status_code, description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands `downstream` (the exporting processor) each finished span, scrubbed."""

    def __init__(self, downstream: SpanProcessor):
        self._downstream = downstream

    def on_start(self, span, parent_context=None) -> None:
        self._downstream.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._downstream.on_end(scrubbed_span(span))

    def shutdown(self) -> None:
        self._downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._downstream.force_flush(timeout_millis)


class ScrubbingLogProcessor(LogRecordProcessor):
    """Log record processor, added before the exporting one: it scrubs the record in place (a
    record is mutable until every processor has seen it)."""

    def on_emit(self, log_record) -> None:
        record = log_record.log_record
        if isinstance(record.body, str):
            record.body = scrub_text(record.body)
        attributes = record.attributes
        if attributes:
            for key in [k for k in attributes if _forbidden(k, False)]:
                del attributes[key]
            for key, value in list(attributes.items()):
                scrubbed = _scrub_value(value)
                if scrubbed != value:
                    attributes[key] = scrubbed

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
