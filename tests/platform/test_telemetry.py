"""Every call produces a span and metrics; the caller's W3C trace context is the span's parent."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
import structlog
from jubao.meta.v1 import meta_pb2
from jubao_server.config import TelemetrySettings
from jubao_server.telemetry import setup_logging
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint

from tests.platform.harness import Running, bearer, settings_for, start

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_span_and_metrics_for_a_call(running: Running, keys: dict[str, str]) -> None:
    metadata = (*bearer(keys["demo-bank"]), ("traceparent", TRACEPARENT))
    await running.meta.Ping(meta_pb2.PingRequest(), metadata=metadata)
    await _counted(running, {"jubao.tenant_id": "demo-bank", "rpc.grpc.status_code": "OK"})

    span = next(s for s in running.spans.get_finished_spans() if s.name == "jubao.meta.v1.MetaService/Ping")
    assert span.attributes is not None
    assert span.attributes["jubao.tenant_id"] == "demo-bank"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"

    points = _points(running)
    durations = [p for p in points["rpc.server.duration"] if isinstance(p, HistogramDataPoint)]
    assert sum(p.count for p in durations) >= 1
    assert "rpc.server.in_flight" in points


async def test_rejected_call_is_counted_with_its_code(running: Running) -> None:
    await running.meta.Ping(meta_pb2.PingRequest()).code()
    await _counted(running, {"rpc.grpc.status_code": "UNAUTHENTICATED"})


COUNT_POLLS_MAX = 50
COUNT_POLL_S = 0.05


async def _counted(running: Running, wanted: Mapping[str, str]) -> None:
    """A call with these attributes is counted. The server counts a call once it has answered it, so
    the client may hear the answer first: poll, for a bounded time."""
    for _ in range(COUNT_POLLS_MAX):
        calls = _points(running).get("rpc.server.calls", [])
        if any(all(_attrs(p).get(k) == v for k, v in wanted.items()) for p in calls):
            return
        await asyncio.sleep(COUNT_POLL_S)
    pytest.fail(f"no call {dict(wanted)} counted within {COUNT_POLLS_MAX * COUNT_POLL_S} s")


def _points(running: Running) -> dict[str, list[NumberDataPoint | HistogramDataPoint]]:
    data = running.metrics.get_metrics_data()
    assert data is not None
    found: dict[str, list[NumberDataPoint | HistogramDataPoint]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)  # type: ignore[arg-type]
    return found


def _attrs(point: NumberDataPoint | HistogramDataPoint) -> Mapping[str, object]:
    return point.attributes or {}


async def test_prometheus_endpoint_exports_call_metrics(tmp_path: Path, keys: dict[str, str]) -> None:
    running = await start(settings_for(tmp_path / "jubao.db", telemetry={"prometheus_port": 0}))
    try:
        await running.meta.Ping(meta_pb2.PingRequest(), metadata=bearer(keys["demo-bank"]))
        port = running.server.telemetry.prometheus_port
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    finally:
        await running.close()
    assert 'rpc_server_calls_total{jubao_tenant_id="demo-bank"' in body
    assert "rpc_server_duration_milliseconds_bucket" in body


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_logs_are_json_with_trace_ids(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(TelemetrySettings(log_format="json"))
    with running.server.telemetry.tracer.start_as_current_span("probe") as span:
        structlog.get_logger("jubao.test").info("probe event", answer=42)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "probe event" and line["answer"] == 42
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
