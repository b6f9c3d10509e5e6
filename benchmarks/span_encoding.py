"""CPU per span of the service's OTLP span encoder against the SDK's, side by side in one run.

Builds batches shaped like the service's traffic (a server span with the HTTP attributes and
SQL statement spans under it; ids and paths differ per request, SQL text and routes repeat),
checks that both encoders produce the same message, then times each on the same batches, in
alternating repetitions.

    python -m benchmarks.span_encoding [--requests 100] [--repeat 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.telemetry.span_encoding import SpanEncoder

STATEMENTS = (
    "UPDATE reviews SET status=%(status)s, updated_at=%(updated_at)s::TIMESTAMP WITH TIME ZONE, "
    "decided_at=%(decided_at)s::TIMESTAMP WITH TIME ZONE WHERE reviews.id = %(id_1)s::VARCHAR "
    "AND reviews.status IN (%(status_1_1)s, %(status_1_2)s) RETURNING reviews.id, reviews.apv_code",
    "INSERT INTO decisions (id, review_id, decision, justification, confidence, modifications, reviewer, "
    "cve_id, severity, patch_strategy, wargame_verdict, decision_latency_seconds, action, action_status, "
    "action_attempts, action_error, action_next_attempt_at, traceparent, created_at) VALUES (%(id)s::VARCHAR, "
    "%(review_id)s::VARCHAR, %(decision)s, %(justification)s, %(confidence)s, %(modifications)s::JSON)",
    "UPDATE decisions SET action_status=%(action_status)s, action_attempts=%(action_attempts)s::INTEGER "
    "WHERE decisions.id = %(decisions_id)s::VARCHAR",
)


def service_like_spans(requests: int) -> list:
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({
        "service.name": "hitl-review", "service.version": "0.1.0",
        "service.instance.id": str(uuid.uuid4()), "deployment.environment.name": "benchmark",
    }))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    http = provider.get_tracer("opentelemetry.instrumentation.asgi", "0.66b1")
    sql = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", "0.66b1")
    for _ in range(requests):
        review = uuid.uuid4()
        with http.start_as_current_span("POST /api/v1/reviews/{review_id}/decisions", kind=trace.SpanKind.SERVER,
                                        attributes={
                                            "url.scheme": "http", "server.address": "127.0.0.1:8000",
                                            "server.port": 8000, "network.protocol.version": "1.1",
                                            "url.path": f"/api/v1/reviews/{review}/decisions",
                                            "http.request.method": "POST",
                                            "http.route": "/api/v1/reviews/{review_id}/decisions",
                                            "hitl.decision": "approve", "hitl.review.severity": "high",
                                            "http.response.status_code": 201}):
            for statement in STATEMENTS:
                operation = statement.split()[0]
                sql.start_span(f"{operation} hitl", kind=trace.SpanKind.CLIENT, attributes={
                    "server.address": "127.0.0.1", "server.port": 5432, "db.namespace": "hitl",
                    "db.query.text": statement, "db.system.name": "postgresql",
                    "db.operation.name": operation}).end()
    return list(kept.get_finished_spans())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100, help="requests per batch (4 spans each)")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)

    batch = service_like_spans(args.requests)
    encoder = SpanEncoder()
    if ExportTraceServiceRequest.FromString(encoder.encode(batch)) != encode_spans(batch):
        raise SystemExit("the encoders disagree")

    def sdk():
        return encode_spans(fresh_batch).SerializeToString()

    def ours():  # what FastOTLPSpanExporter hands to gRPC: parsed back, serialized again
        return ExportTraceServiceRequest.FromString(encoder.encode(fresh_batch)).SerializeToString()

    times: dict[str, list[float]] = {"sdk": [], "ours": []}
    for _ in range(args.repeat):
        fresh_batch = service_like_spans(args.requests)  # new ids and paths each time
        for name, fn in (("sdk", sdk), ("ours", ours)) if _ % 2 else (("ours", ours), ("sdk", sdk)):
            start = time.process_time()
            fn()
            times[name].append((time.process_time() - start) / len(batch) * 1e6)
    sdk_us, ours_us = statistics.median(times["sdk"]), statistics.median(times["ours"])
    print(f"{len(batch)} spans per batch, {args.repeat} alternating repetitions, median CPU per span")
    print("| encoder | µs per span |")
    print("|---|---:|")
    print(f"| SDK (opentelemetry-exporter-otlp-proto-common) | {sdk_us:.1f} |")
    print(f"| app/telemetry/span_encoding.py (+ parse and serialize for gRPC) | {ours_us:.1f} |")
    print(f"ratio {sdk_us / ours_us:.1f}x")


if __name__ == "__main__":
    main()
