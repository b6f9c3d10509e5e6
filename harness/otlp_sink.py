"""A real OTLP/gRPC receiver (the three collector services of the OTLP protocol) that keeps
what it receives, so tests see exactly what a process exported over the wire."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def value_of(v: AnyValue):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs) -> dict:
    return {kv.key: value_of(kv.value) for kv in kvs}


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict
    resource: dict
    scope: str
    status_code: int
    status_message: str = ""
    events: list = field(default_factory=list)  # (name, attributes)


@dataclass
class MetricSeen:
    name: str
    unit: str
    data: str  # sum, gauge, histogram, ...
    monotonic: bool | None
    attribute_keys: set = field(default_factory=set)
    points: list = field(default_factory=list)  # (attributes, value)
    resource: dict = field(default_factory=dict)


@dataclass
class LogSeen:
    body: object
    severity: str
    trace_id: str
    span_id: str
    attributes: dict
    resource: dict


class OtlpSink:
    def __init__(self, port: int = 0):
        self.spans: list[Span] = []
        self.metrics: dict[str, MetricSeen] = {}
        self.logs: list[LogSeen] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        sink = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802 - gRPC naming
                sink._traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                sink._metrics(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                sink._logs(request)
                return logs_service_pb2.ExportLogsServiceResponse()

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=0).wait()

    def _traces(self, request) -> None:
        with self._lock:
            for rs in request.resource_spans:
                resource = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            Span(
                                name=s.name,
                                kind=s.kind,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_span_id=s.parent_span_id.hex(),
                                attributes=attrs(s.attributes),
                                resource=resource,
                                scope=ss.scope.name,
                                status_code=s.status.code,
                                status_message=s.status.message,
                                events=[(e.name, attrs(e.attributes)) for e in s.events],
                            )
                        )

    def _metrics(self, request) -> None:
        with self._lock:
            for rm in request.resource_metrics:
                resource = attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        data = m.WhichOneof("data")
                        body = getattr(m, data)
                        monotonic = body.is_monotonic if data == "sum" else None
                        seen = self.metrics.setdefault(
                            m.name, MetricSeen(m.name, m.unit, data, monotonic, resource=resource)
                        )
                        for p in body.data_points:
                            a = attrs(p.attributes)
                            seen.attribute_keys |= set(a)
                            if data == "histogram":
                                value = (p.count, p.sum)
                            else:
                                value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            seen.points.append((a, value))

    def _logs(self, request) -> None:
        with self._lock:
            for rl in request.resource_logs:
                resource = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        self.logs.append(
                            LogSeen(
                                body=value_of(r.body),
                                severity=r.severity_text,
                                trace_id=r.trace_id.hex(),
                                span_id=r.span_id.hex(),
                                attributes=attrs(r.attributes),
                                resource=resource,
                            )
                        )

    def latest(self, metric: str) -> dict:
        """{frozenset(attribute items): last value} of a metric."""
        out = {}
        for a, v in self.metrics[metric].points:
            out[frozenset(a.items())] = v
        return out
