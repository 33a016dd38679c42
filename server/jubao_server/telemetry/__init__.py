"""OpenTelemetry traces and metrics for every RPC, a Prometheus scrape endpoint, and JSON logs that
carry trace ids."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast
from wsgiref.simple_server import WSGIServer

import structlog
from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from prometheus_client import start_http_server

from jubao_server.config import TelemetrySettings

# Latency buckets in milliseconds, from 0.1 ms to 10 s.
LATENCY_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclasses.dataclass
class Telemetry:
    tracer: trace.Tracer
    calls: metrics.Counter
    duration_ms: metrics.Histogram
    in_flight: metrics.UpDownCounter
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    prometheus: WSGIServer | None

    @property
    def prometheus_port(self) -> int | None:
        return int(self.prometheus.server_port) if self.prometheus is not None else None

    def shutdown(self) -> None:
        if self.prometheus is not None:
            self.prometheus.shutdown()
            self.prometheus.server_close()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    settings: TelemetrySettings,
    *,
    span_processor: SpanProcessor | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Build providers from the settings; tests add an in-memory span processor or metric reader."""
    resource = Resource.create({"service.name": settings.service_name})
    tracer_provider = TracerProvider(resource=resource)
    for processor in _span_processors(settings, span_processor):
        tracer_provider.add_span_processor(processor)
    readers = _metric_readers(settings, metric_reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    prometheus = None
    if any(isinstance(r, PrometheusMetricReader) for r in readers):
        prometheus, _ = start_http_server(settings.prometheus_port or 0, addr="127.0.0.1")
    meter = meter_provider.get_meter("jubao.server")
    tracer = tracer_provider.get_tracer("jubao.server")
    return Telemetry(
        tracer=tracer,
        calls=meter.create_counter("rpc.server.calls", unit="{call}", description="RPCs handled"),
        duration_ms=meter.create_histogram(
            "rpc.server.duration",
            unit="ms",
            description="RPC latency",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
        ),
        in_flight=meter.create_up_down_counter(
            "rpc.server.in_flight", unit="{call}", description="RPCs in flight"
        ),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        prometheus=prometheus,
    )


def _span_processors(settings: TelemetrySettings, extra: SpanProcessor | None) -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    if settings.traces_exporter == "otlp":
        # The OTLP exporters speak gRPC: imported only when chosen, so that a process that must not load
        # gRPC (the Arrow Flight server) can use the rest of the telemetry.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        processors.append(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True))
        )
    elif settings.traces_exporter == "console":
        processors.append(BatchSpanProcessor(ConsoleSpanExporter()))
    if extra is not None:
        processors.append(extra)
    return processors


def _metric_readers(settings: TelemetrySettings, extra: MetricReader | None) -> list[MetricReader]:
    interval_ms = settings.metrics_export_interval_ms
    readers: list[MetricReader] = []
    if settings.metrics_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: PLC0415

        exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True)
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms))
    elif settings.metrics_exporter == "console":
        readers.append(
            PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval_ms)
        )
    if settings.prometheus_port is not None:
        readers.append(PrometheusMetricReader())
    if extra is not None:
        readers.append(extra)
    return readers


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event["trace_id"] = format(span.trace_id, "032x")
        event["span_id"] = format(span.span_id, "016x")
    return event


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of the write (tests swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(settings: TelemetrySettings) -> None:
    """Structured logs on stderr: JSON lines (default) or a console rendering, with trace ids."""
    level = getattr(logging, settings.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=True,
    )
