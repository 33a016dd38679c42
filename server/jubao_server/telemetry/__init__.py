"""OpenTelemetry traces (head-sampled) and metrics for every RPC (`calls.py`), a Prometheus scrape endpoint,
and JSON logs that carry trace ids."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast
from wsgiref.simple_server import WSGIServer

import structlog
from opentelemetry import trace
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
from jubao_server.telemetry.calls import CallMetrics, CallSampler


@dataclasses.dataclass
class Telemetry:
    tracer: trace.Tracer
    sampler: CallSampler
    calls: CallMetrics
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
    rpc_system: str = "grpc",
) -> Telemetry:
    """Build providers from the settings; tests add an in-memory span processor or metric reader. The
    process's calls are labelled with `rpc_system` (the gRPC server's `grpc`, the Flight server's
    `arrow_flight`)."""
    resource = Resource.create({"service.name": settings.service_name})
    sampler = CallSampler(settings.traces_sample_ratio)
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    for processor in _span_processors(settings, span_processor):
        tracer_provider.add_span_processor(processor)
    readers = _metric_readers(settings, metric_reader)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    prometheus = None
    if any(isinstance(r, PrometheusMetricReader) for r in readers):
        prometheus, _ = start_http_server(settings.prometheus_port or 0, addr="127.0.0.1")
    return Telemetry(
        tracer=tracer_provider.get_tracer("jubao.server"),
        sampler=sampler,
        calls=CallMetrics(meter_provider.get_meter("jubao.server"), rpc_system),
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
