"""The asyncio client against a real in-process gRPC server."""

from __future__ import annotations

import grpc
import pytest
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb2
from jubao.client import AsyncClient, ClientConfig, FieldViolation, InvalidArgument, NotFound, Reason
from jubao.meta.v1 import meta_pb2
from opentelemetry.sdk.trace import TracerProvider

from .conftest import API_KEY
from .fakes import FakeServer, rich_status


async def test_sends_api_key_trace_context_and_default_deadline(
    server: FakeServer, config: ClientConfig
) -> None:
    tracer = TracerProvider().get_tracer("client-test")
    async with AsyncClient(config) as client:
        with tracer.start_as_current_span("caller") as span:
            caller = await client.meta.GetCaller(meta_pb2.GetCallerRequest())
    assert caller.tenant_id == "acme-bank"
    (call,) = server.script.calls
    assert call.metadata["authorization"] == f"Bearer {API_KEY}"
    assert str(call.metadata["traceparent"]).startswith(f"00-{span.get_span_context().trace_id:032x}-")
    assert call.time_remaining_s is not None
    assert 4.0 < call.time_remaining_s < 5.1


async def test_reuses_filled_request_id_across_retries(server: FakeServer, config: ClientConfig) -> None:
    server.script.fail_next(rich_status(grpc.StatusCode.UNAVAILABLE, "draining", Reason.DRAINING), times=3)
    request = admin_pb2.IssueApiKeyRequest(tenant_id="alpha", display_name="ci")
    async with AsyncClient(config) as client:
        response = await client.admin.IssueApiKey(request, timeout=2.0)
    assert response.api_key.display_name == "ci"
    assert request.request_id
    assert [call.request_id for call in server.script.calls] == [request.request_id] * 4


async def test_invalid_argument_is_typed_and_not_retried(server: FakeServer, config: ClientConfig) -> None:
    violations = [("quota.requests_per_s", "must be 1..100000")]
    status = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, "bad quota", Reason.INVALID_ARGUMENT, violations=violations
    )
    server.script.fail_next(status)
    request = admin_pb2.UpdateTenantQuotaRequest(tenant_id="alpha")
    async with AsyncClient(config) as client:
        with pytest.raises(InvalidArgument) as caught:
            await client.admin.UpdateTenantQuota(request)
    assert caught.value.field_violations == (FieldViolation("quota.requests_per_s", "must be 1..100000"),)
    assert len(server.script.calls) == 1


async def test_not_found_from_servicer(config: ClientConfig) -> None:
    async with AsyncClient(config) as client:
        with pytest.raises(NotFound) as caught:
            await client.admin.GetTenant(admin_pb2.GetTenantRequest(tenant_id="nobody"))
    assert caught.value.reason == Reason.TENANT_NOT_FOUND
