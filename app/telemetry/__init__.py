"""OpenTelemetry set-up for the service: traces, metrics and logs over OTLP, nothing else.

Configured from the standard OTEL_* environment variables (the exporters read endpoint,
protocol, headers, timeout and compression themselves). `OTEL_SDK_DISABLED=true` turns all of
it off, instrumentation included, which is the baseline of the overhead benchmark.

Choices that are not the defaults, and why:
- Every span is sampled (ALWAYS_ON, not parent-based): the collector derives RED metrics from
  the spans, so a dropped span would be a missing request in the metrics.
- The ASGI `send`/`receive` spans and SQLAlchemy's per-checkout `connect` spans are not
  created: they carry nothing a person looks at, and cost CPU on every request.
- SQLAlchemy's connection-usage metric is not recorded (the pool is read instead), and the
  HTTP server duration/active-requests instruments of the instrumentation are never created
  (it gets no-op instruments for them): the collector's spanmetrics connector derives the same
  RED metrics from the spans. A view would drop them too, but only after every measurement went
  through the SDK (3 per request). The request/response body size histograms are kept.
- Spans sent over OTLP/gRPC (what the stack and compose use) are encoded by
  app/telemetry/span_encoding.py instead of the SDK's per-field encoder: the same message for
  ~2.4x less CPU; transport, retries and headers stay the SDK exporter's.
- Exports have a bounded timeout and shutdown a bounded flush, so a missing collector never
  holds the process past its grace period (measured here: the SDK's unbounded
  retries held a shutdown ~38 s).
- No span, log record or resource carries the client's address, port or user agent, a query
  string, captured request headers or a URL's credentials: personal data (or tokens a client
  put in a URL) that the RED metrics do not need. Removed in the SDK's pipeline before export,
  in every HTTP instrumentation and semantic-convention mode (app/telemetry/scrubbing.py).
- Health probes are not traced: they would drown the RED metrics of the real routes.
- The instrumentations emit the stable HTTP and database semantic conventions
  (`OTEL_SEMCONV_STABILITY_OPT_IN=http,database` unless set): the collector's span metrics
  use http.route, http.request.method and http.response.status_code as dimensions.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.metrics import MeterProvider, NoOpCounter, NoOpHistogram, NoOpUpDownCounter

from app import __version__

log = logging.getLogger(__name__)

EXCLUDED_URLS = "/health/live,/health/ready"
DEFAULT_EXPORT_TIMEOUT_SECONDS = 5.0
SHUTDOWN_FLUSH_MILLIS = 3000
# Instrumentation metrics that duplicate what the collector derives from spans.
DROPPED_INSTRUMENTATION_METRICS = (
    "http.server.request.duration",
    "http.server.duration",
    "http.server.active_requests",
)
PROCESS_METRICS = {
    "process.cpu.time": ["user", "system"],
    "process.cpu.utilization": None,
    "process.memory.usage": None,
    "process.memory.virtual": None,
    "process.thread.count": None,
}


QUIET_LOGGERS = ("sqlalchemy", "httpx", "httpcore")


class InstrumentFilter(MeterProvider):
    """Meter provider for an instrumentation library: the instruments named in `dropped` are
    no-ops (a call costs nothing), every other instrument comes from `provider`."""

    def __init__(self, provider: MeterProvider, dropped: Iterable[str]):
        self._provider = provider
        self._dropped = frozenset(dropped)

    def get_meter(self, name, version=None, schema_url=None, attributes=None):
        return _FilteredMeter(self._provider.get_meter(name, version, schema_url, attributes), self._dropped)


class _FilteredMeter:
    _NO_OPS = {
        "create_counter": NoOpCounter,
        "create_up_down_counter": NoOpUpDownCounter,
        "create_histogram": NoOpHistogram,
    }

    def __init__(self, meter, dropped: frozenset[str]):
        self._meter = meter
        self._dropped = dropped

    def __getattr__(self, attr):
        create = getattr(self._meter, attr)
        no_op = self._NO_OPS.get(attr)
        if no_op is None:
            return create

        def create_or_drop(name, *args, **kwargs):
            return no_op(name) if name in self._dropped else create(name, *args, **kwargs)

        return create_or_drop


def sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


@dataclass
class Telemetry:
    """Handle on the providers; `shutdown()` flushes and stops them (bounded in time)."""

    enabled: bool
    tracer_provider: object | None = None
    meter_provider: object | None = None
    logger_provider: object | None = None
    _handlers: list[logging.Handler] = field(default_factory=list)

    def shutdown(self) -> None:
        if not self.enabled:
            return
        for handler in self._handlers:
            logging.getLogger().removeHandler(handler)
        for provider in (self.tracer_provider, self.logger_provider):
            try:
                provider.force_flush(SHUTDOWN_FLUSH_MILLIS)
            except Exception:  # noqa: BLE001 - flushing is best effort at shutdown
                pass
            provider.shutdown()
        try:
            self.meter_provider.shutdown(timeout_millis=SHUTDOWN_FLUSH_MILLIS)
        except Exception:  # noqa: BLE001
            pass


def _protocol(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _timeout(signal: str) -> float:
    raw = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    # The spec gives milliseconds; Python's exporters take seconds.
    return float(raw) / 1000 if raw else DEFAULT_EXPORT_TIMEOUT_SECONDS


def _exporter(signal: str):
    grpc = _protocol(signal) == "grpc"
    timeout = _timeout(signal)
    if signal == "TRACES":
        if grpc:  # the SDK's exporter with a faster encoder (app/telemetry/span_encoding.py)
            from app.telemetry.span_encoding import FastOTLPSpanExporter as OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(timeout=timeout)
    if signal == "METRICS":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter(timeout=timeout)
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter(timeout=timeout)


def build_resource(service_name: str, environment: str):
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    from app.telemetry.scrubbing import scrub_resource_attributes

    from_env = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    attrs = dict(from_env.attributes)
    if str(attrs.get(SERVICE_NAME, "unknown_service")).startswith("unknown_service"):
        attrs[SERVICE_NAME] = service_name
    attrs.setdefault("service.version", __version__)
    attrs.setdefault("service.instance.id", str(uuid.uuid4()))
    attrs.setdefault("deployment.environment.name", environment)
    return Resource(scrub_resource_attributes(attrs), from_env.schema_url)


def setup_telemetry(service_name: str, environment: str, *, log_level: int = logging.INFO) -> Telemetry:
    """Install global tracer, meter and logger providers exporting over OTLP."""
    if sdk_disabled():
        return Telemetry(enabled=False)
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http,database")
    # Exemplars come from the collector's span metrics; SDK-side exemplar sampling on every
    # measurement would be CPU spent for nothing.
    os.environ.setdefault("OTEL_METRICS_EXEMPLAR_FILTER", "always_off")
    # Spans leave the process every second instead of the SDK's 5 s: the RED metrics are derived
    # from them, and the 5 s default alone took half of the 10 s freshness budget
    # (docs/benchmarks.md). Large bursts still go out in full batches of 512 as they fill up.
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")

    from opentelemetry import _logs, metrics, trace
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from app.telemetry.scrubbing import ScrubbingLogProcessor, ScrubbingSpanProcessor

    resource = build_resource(service_name, environment)

    tracer_provider = TracerProvider(resource=resource, sampler=ALWAYS_ON)
    tracer_provider.add_span_processor(ScrubbingSpanProcessor(BatchSpanProcessor(_exporter("TRACES"))))
    trace.set_tracer_provider(tracer_provider)

    interval = int(os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "10000"))
    reader = PeriodicExportingMetricReader(
        _exporter("METRICS"),
        export_interval_millis=interval,
        export_timeout_millis=int(_timeout("METRICS") * 1000),
    )
    meter_provider = SdkMeterProvider(resource=resource, metric_readers=[reader])
    metrics.set_meter_provider(meter_provider)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(ScrubbingLogProcessor())  # first: it edits the record
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(_exporter("LOGS")))
    _logs.set_logger_provider(logger_provider)
    handler = LoggingHandler(level=log_level, logger_provider=logger_provider)
    logging.getLogger().addHandler(handler)
    for name in QUIET_LOGGERS:  # per-request INFO chatter (and full URLs) stays out of the logs
        logging.getLogger(name).setLevel(logging.WARNING)

    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor

    HTTPXClientInstrumentor().instrument()
    RedisInstrumentor().instrument()
    SystemMetricsInstrumentor(config=PROCESS_METRICS).instrument()

    return Telemetry(
        enabled=True,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        _handlers=[handler],
    )


def native_http_instrumentation() -> bool:
    """HITL_HTTP_INSTRUMENTATION=fastapi: FastAPI's built-in server spans instead of the contrib
    instrumentation (an experiment measured in docs/benchmarks.md; no body-size metrics)."""
    return os.environ.get("HITL_HTTP_INSTRUMENTATION", "contrib").strip().lower() == "fastapi"


def fastapi_telemetry_config() -> dict:
    """FastAPI(telemetry=...): off, unless native_http_instrumentation()."""
    if not native_http_instrumentation() or sdk_disabled():
        return {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    excluded = tuple(EXCLUDED_URLS.split(","))
    return {"tracing": True, "metrics": False, "logs": False, "operation_spans": False,
            "exclude": lambda scope: scope.get("path") in excluded}


def instrument_app(app) -> None:
    """FastAPI server spans (without the ASGI send/receive spans)."""
    if sdk_disabled() or native_http_instrumentation():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from opentelemetry import metrics

    FastAPIInstrumentor.instrument_app(
        app,
        meter_provider=InstrumentFilter(metrics.get_meter_provider(), DROPPED_INSTRUMENTATION_METRICS),
        excluded_urls=EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


def instrument_engine(engine) -> None:
    """One span per statement; no span per pool checkout."""
    if sdk_disabled():
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.utils import unwrap
    from sqlalchemy.engine.base import Engine

    instrumentor = SQLAlchemyInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    # Its only metric (db.client.connections.usage, 4 updates per request) duplicates
    # db.client.connection.count, which app/telemetry/metrics.py reads from the pool for free.
    from opentelemetry.metrics import NoOpMeterProvider

    instrumentor.instrument(engine=engine, enable_commenter=False, meter_provider=NoOpMeterProvider())
    # instrument() also wraps Engine.connect to open a `connect` span per checkout.
    unwrap(Engine, "connect")
