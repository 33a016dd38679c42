"""The call pipeline's deadlines, the traces its head sampler keeps, and the trace context of a forwarded
call, on a gRPC server of the test's own: the real pipeline (credentials from the demo catalogue, quotas,
telemetry with in-memory readers) in front of a MetaService whose Ping sleeps, or needs another server,
when its payload says so."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import pytest
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc
from jubao_server import limits
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.config import ServerSettings, TelemetrySettings
from jubao_server.errors import HeldElsewhere
from jubao_server.platform.forwarding import FORWARDED_BY, Forwarder
from jubao_server.platform.pipeline import CallPipeline, ServicePolicy
from jubao_server.platform.service import MetaService
from jubao_server.storage.memory import MemoryBackend
from jubao_server.telemetry import Telemetry, setup_telemetry
from jubao_server.telemetry.calls import CallMetrics
from jubao_server.tenancy.auth import Authenticator
from jubao_server.tenancy.catalogue import load_catalogue
from jubao_server.tenancy.quotas import QuotaGate
from jubao_server.tenancy.seed import seed_catalogue
from jubao_server.tenancy.store import TenantStore
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.platform.errors import expect_error
from tests.platform.harness import CATALOGUE, bearer, demo_keys

DEFAULT_MS: Final = 300
MAX_MS: Final = 600
SLEEP: Final = b"sleep"
HELD: Final = b"held:"
PING: Final = "jubao.meta.v1.MetaService/Ping"
TRACE_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID: Final = "00f067aa0ba902b7"
SPAN_POLLS_MAX: Final = 100
SPAN_POLL_S: Final = 0.01


class SlowMeta(MetaService):
    """Ping sleeps for a second when its payload is `SLEEP`, and says the server at the address after
    `HELD` holds what it needs; it notes how each sleep ended."""

    def __init__(self) -> None:
        self.sleeps: list[str] = []

    async def Ping(self, request: meta_pb2.PingRequest, context: Any) -> meta_pb2.PingResponse:  # noqa: N802
        if request.payload.startswith(HELD):
            raise HeldElsewhere("held by the other server", request.payload.removeprefix(HELD).decode())
        if request.payload != SLEEP:
            return await super().Ping(request, context)
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            self.sleeps.append("cancelled")
            raise
        self.sleeps.append("slept")
        return meta_pb2.PingResponse()


@dataclasses.dataclass
class Guarded:
    pipeline: CallPipeline
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    meta: SlowMeta
    stub: meta_pb2_grpc.MetaServiceAsyncStub

    def finished_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == PING]

    async def failed_span(self) -> ReadableSpan:
        """The one span of a call that failed. gRPC sends a refusal's status from inside `abort`, before
        the pipeline ends the call's span, so the client may see the error first: wait for the span."""
        for _ in range(SPAN_POLLS_MAX):
            if spans := self.finished_spans():
                (span,) = spans
                return span
            await asyncio.sleep(SPAN_POLL_S)
        raise AssertionError("the failed call's span never ended")

    def calls(self, code: str) -> int:
        data = self.metrics.get_metrics_data()
        assert data is not None
        points = [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "rpc.server.calls"
            for point in metric.data.data_points
        ]
        return sum(
            int(point.value)
            for point in points
            if isinstance(point, NumberDataPoint)
            and (point.attributes or {}).get("rpc.grpc.status_code") == code
        )


async def guarded(ratio: float) -> AsyncIterator[Guarded]:
    backend = MemoryBackend(SYSTEM_CLOCK)
    await migrate(backend)
    store = TenantStore(backend, SYSTEM_CLOCK)
    await seed_catalogue(store, load_catalogue(CATALOGUE), SYSTEM_CLOCK)
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    settings = TelemetrySettings(prometheus_port=None, traces_sample_ratio=ratio)
    telemetry = setup_telemetry(settings, span_processor=SimpleSpanProcessor(spans), metric_reader=metrics)
    server_settings = ServerSettings(deadline_default_ms=DEFAULT_MS, deadline_max_ms=MAX_MS)
    forwarder = Forwarder(server_settings)
    authenticator = Authenticator(store, 1_000, SYSTEM_CLOCK)
    pipeline = CallPipeline(
        authenticator, QuotaGate(SYSTEM_CLOCK), telemetry, server_settings, forwarder=forwarder
    )
    server = grpc.aio.server(interceptors=[pipeline])
    pipeline.guard("jubao.meta.v1.MetaService", ServicePolicy())
    meta = SlowMeta()
    meta_pb2_grpc.add_MetaServiceServicer_to_server(meta, server)
    port = server.add_insecure_port("127.0.0.1:0")
    forwarder.address = f"127.0.0.1:{port}"
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Guarded(pipeline, telemetry, spans, metrics, meta, meta_pb2_grpc.MetaServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(None)
        await forwarder.close()
        telemetry.shutdown()
        await backend.close()


@pytest.fixture
async def untraced() -> AsyncIterator[Guarded]:
    """The pipeline with a head sampler that traces no call of its own choice."""
    async for handle in guarded(0.0):
        yield handle


@pytest.fixture
async def traced() -> AsyncIterator[Guarded]:
    """The pipeline with a head sampler that traces every call."""
    async for handle in guarded(1.0):
        yield handle


def bank() -> tuple[tuple[str, str], ...]:
    return bearer(demo_keys()["demo-bank"])


def with_parent(sampled: bool) -> tuple[tuple[str, str], ...]:
    flags = "01" if sampled else "00"
    return (*bank(), ("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN_ID}-{flags}"))


async def test_a_call_without_a_deadline_gets_the_default(untraced: Guarded) -> None:
    started_s = asyncio.get_running_loop().time()
    call = untraced.stub.Ping(meta_pb2.PingRequest(payload=SLEEP), metadata=bank())
    await expect_error(call, grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED)
    elapsed_ms = (asyncio.get_running_loop().time() - started_s) * 1000
    assert DEFAULT_MS <= elapsed_ms < MAX_MS
    assert untraced.meta.sleeps == ["cancelled"]


async def test_a_deadline_past_the_maximum_is_cut_to_it(untraced: Guarded) -> None:
    started_s = asyncio.get_running_loop().time()
    call = untraced.stub.Ping(meta_pb2.PingRequest(payload=SLEEP), metadata=bank(), timeout=5)
    await expect_error(call, grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED)
    assert MAX_MS <= (asyncio.get_running_loop().time() - started_s) * 1000 < 1000
    assert untraced.calls("DEADLINE_EXCEEDED") == 1


async def test_a_client_deadline_within_the_maximum_ends_the_call_in_grpc(untraced: Guarded) -> None:
    """gRPC cancels the servicer at the client's deadline; the call counts as DEADLINE_EXCEEDED and,
    failed on the server's side, is traced although the head sampler chose not to."""
    call = untraced.stub.Ping(meta_pb2.PingRequest(payload=SLEEP), metadata=bank(), timeout=0.1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(50):
        if untraced.meta.sleeps:
            break
        await asyncio.sleep(0.01)
    assert untraced.meta.sleeps == ["cancelled"]
    assert untraced.calls("DEADLINE_EXCEEDED") == 1
    (span,) = untraced.finished_spans()
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 4
    assert span.status.status_code is StatusCode.ERROR


async def test_calls_the_head_does_not_trace_are_counted_without_a_span(untraced: Guarded) -> None:
    for metadata in (bank(), with_parent(sampled=False)):
        await untraced.stub.Ping(meta_pb2.PingRequest(), metadata=metadata)
    await expect_error(
        untraced.stub.Ping(meta_pb2.PingRequest()), grpc.StatusCode.UNAUTHENTICATED, Reason.API_KEY_MISSING
    )
    assert untraced.finished_spans() == []
    assert untraced.calls("OK") == 2
    assert untraced.calls("UNAUTHENTICATED") == 1


async def test_a_caller_that_traces_its_call_gets_the_span(untraced: Guarded) -> None:
    await untraced.stub.Ping(meta_pb2.PingRequest(), metadata=with_parent(sampled=True))
    (span,) = untraced.finished_spans()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN_ID
    assert span.attributes is not None and span.attributes["jubao.tenant_id"] == "demo-bank"


async def test_an_untraced_call_that_fails_on_the_server_side_is_traced_in_its_callers_trace(
    untraced: Guarded,
) -> None:
    untraced.pipeline.draining = True
    call = untraced.stub.Ping(meta_pb2.PingRequest(), metadata=with_parent(sampled=False))
    await expect_error(call, grpc.StatusCode.UNAVAILABLE, Reason.DRAINING)
    span = await untraced.failed_span()
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN_ID
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 14
    assert span.status.status_code is StatusCode.ERROR
    assert span.start_time is not None and span.end_time is not None and span.start_time < span.end_time


async def test_the_head_sampler_traces_calls_without_a_parent_at_its_ratio(traced: Guarded) -> None:
    for _ in range(3):
        await traced.stub.Ping(meta_pb2.PingRequest(), metadata=bank())
    spans = traced.finished_spans()
    assert len(spans) == 3 and all(span.parent is None for span in spans)
    assert len({span.context.trace_id for span in spans}) == 3


async def test_a_forwarded_call_carries_the_span_of_a_traced_call(untraced: Guarded) -> None:
    """The server that holds what the call needs gets the forwarding server's span as the parent, not
    the caller's; the rest of the caller's metadata goes as it came."""
    seen: list[list[tuple[str, str | bytes]]] = []

    async def holder_ping(body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append([(key, value) for key, value in context.invocation_metadata() or ()])
        return b""

    holder = grpc.aio.server()
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(holder_ping)
    holder.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("jubao.meta.v1.MetaService", {"Ping": handler}),)
    )
    port = holder.add_insecure_port("127.0.0.1:0")
    await holder.start()
    try:
        payload = HELD + f"127.0.0.1:{port}".encode()
        await untraced.stub.Ping(meta_pb2.PingRequest(payload=payload), metadata=with_parent(sampled=True))
    finally:
        await holder.stop(None)
    (span,) = untraced.finished_spans()
    (metadata,) = seen
    forwarded = dict(metadata)
    span_id = format(span.context.span_id, "016x")
    assert forwarded["traceparent"] == f"00-{TRACE_ID}-{span_id}-01"
    assert [value for key, value in metadata if key == "traceparent"] == [forwarded["traceparent"]]
    assert forwarded["authorization"] == dict(bank())["authorization"]
    assert FORWARDED_BY in forwarded


def test_metric_label_sets_are_bounded() -> None:
    reader = InMemoryMetricReader()
    calls = CallMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"), "grpc")
    extra = 5
    for index in range(limits.metric_label_sets_max + extra):
        calls.started("/m")
        calls.finished("/m", f"tenant-{index}", "OK", 0.5)
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {metric.name: metric for metric in data.resource_metrics[0].scope_metrics[0].metrics}
    points = [p for p in metrics["rpc.server.calls"].data.data_points if isinstance(p, NumberDataPoint)]
    assert len(points) == limits.metric_label_sets_max + 1
    overflow = [p for p in points if (p.attributes or {}).get("otel.metric.overflow")]
    assert [p.value for p in overflow] == [extra]
    in_flight = metrics["rpc.server.in_flight"].data.data_points
    assert [(dict(p.attributes or {}), p.value) for p in in_flight if isinstance(p, NumberDataPoint)] == [
        ({"rpc.method": "/m"}, 0)
    ]
