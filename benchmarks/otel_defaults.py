"""The service with a *default* OpenTelemetry set-up, as the overhead benchmark's reference point
(`--otel-defaults`): what the tuning in app/telemetry/ buys, measured side by side.

    python -m benchmarks.otel_defaults      # serves like `python -m app serve`

Same service, same exporters' protocol (OTLP/gRPC to the same receiver), same instrumentation
packages, each with its defaults: the SDK's parent-based sampler, span encoder and 5 s batch
delay; the ASGI send/receive spans, SQLAlchemy's `connect` spans and connection-usage metric,
the HTTP server duration/active-request metrics, trace-based exemplar sampling, the old
semantic conventions and CPython's default garbage collection. Process metrics and the
health-probe exclusion are kept as in the service, so the difference is per-request work.
Benchmark-only: nothing in the service imports this module.
"""

from __future__ import annotations

import logging
import os

import app.main
import app.telemetry as telemetry


def setup_defaults(service_name: str, environment: str) -> telemetry.Telemetry:
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.system_metrics import SystemMetricsInstrumentor
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = telemetry.build_resource(service_name, environment)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    metrics.set_meter_provider(meter_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    handler = LoggingHandler(logger_provider=logger_provider)
    logging.getLogger().addHandler(handler)
    HTTPXClientInstrumentor().instrument()
    RedisInstrumentor().instrument()
    SystemMetricsInstrumentor(config=telemetry.PROCESS_METRICS).instrument()
    return telemetry.Telemetry(enabled=True, tracer_provider=tracer_provider, meter_provider=meter_provider,
                               logger_provider=logger_provider, _handlers=[handler])


def instrument_app_defaults(application) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(application, excluded_urls=telemetry.EXCLUDED_URLS)


def instrument_engine_defaults(engine) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine)


def main() -> None:
    if telemetry.sdk_disabled():
        raise SystemExit("benchmarks.otel_defaults measures telemetry: unset OTEL_SDK_DISABLED")
    os.environ["GC_GEN0_THRESHOLD"] = "0"  # CPython's defaults
    telemetry.setup_telemetry = setup_defaults
    app.main.instrument_app = instrument_app_defaults
    app.main.instrument_engine = instrument_engine_defaults
    import app.__main__ as cli  # serve() imports setup_telemetry from app.telemetry when it runs

    cli.main(["serve"])


if __name__ == "__main__":
    main()
