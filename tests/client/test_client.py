"""The synchronous client against a real in-process gRPC server."""

from __future__ import annotations

import dataclasses
import uuid

import grpc
import pytest
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb2
from jubao.client import (
    ERROR_DOMAIN,
    Client,
    ClientConfig,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Reason,
    ResourceExhausted,
    Unavailable,
)
from jubao.meta.v1 import meta_pb2
from opentelemetry.sdk.trace import TracerProvider

from .conftest import API_KEY
from .fakes import FakeServer, rich_status

UNAVAILABLE = rich_status(grpc.StatusCode.UNAVAILABLE, "draining", Reason.DRAINING)


def create_request() -> admin_pb2.CreateTenantRequest:
    return admin_pb2.CreateTenantRequest(tenant=admin_pb2.Tenant(tenant_id="new-bank", display_name="New"))


def test_sends_bearer_api_key_and_default_deadline(server: FakeServer, config: ClientConfig) -> None:
    with Client(dataclasses.replace(config, default_timeout_ms=3_000)) as client:
        assert client.meta.Ping(meta_pb2.PingRequest(payload=b"hi")).payload == b"hi"
    (call,) = server.script.calls
    assert call.metadata["authorization"] == f"Bearer {API_KEY}"
    assert "traceparent" not in call.metadata
    assert call.time_remaining_s is not None
    assert 2.0 < call.time_remaining_s < 3.1  # grpc-timeout is rounded up on the wire


def test_explicit_timeout_overrides_default(server: FakeServer, config: ClientConfig) -> None:
    with Client(config) as client:
        client.meta.Ping(meta_pb2.PingRequest(), timeout=0.5)
    (call,) = server.script.calls
    assert call.time_remaining_s is not None
    assert call.time_remaining_s < 0.6


def test_injects_trace_context_of_active_span(server: FakeServer, config: ClientConfig) -> None:
    tracer = TracerProvider().get_tracer("client-test")
    with Client(config) as client, tracer.start_as_current_span("caller") as span:
        client.meta.GetCaller(meta_pb2.GetCallerRequest())
    trace_id = f"{span.get_span_context().trace_id:032x}"
    (call,) = server.script.calls
    assert str(call.metadata["traceparent"]).startswith(f"00-{trace_id}-")


def test_fills_request_id_and_reuses_it_across_retries(server: FakeServer, config: ClientConfig) -> None:
    server.script.fail_next(UNAVAILABLE, times=2)
    request = create_request()
    with Client(config) as client:
        response = client.admin.CreateTenant(request)
    assert response.tenant.tenant_id == "new-bank"
    assert server.script.methods() == ["CreateTenant"] * 3
    assert {call.request_id for call in server.script.calls} == {request.request_id}
    assert uuid.UUID(request.request_id).version == 4


def test_keeps_request_id_given_by_caller(server: FakeServer, config: ClientConfig) -> None:
    request = create_request()
    request.request_id = "caller-chosen-id"
    with Client(config) as client:
        client.admin.CreateTenant(request)
    assert [call.request_id for call in server.script.calls] == ["caller-chosen-id"]


def test_gives_up_after_retry_attempts_max(server: FakeServer, config: ClientConfig) -> None:
    server.script.fail_next(UNAVAILABLE, times=5)
    with (
        Client(dataclasses.replace(config, retry_attempts_max=3)) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.admin.CreateTenant(create_request())
    assert caught.value.reason == Reason.DRAINING
    assert len(server.script.calls) == 3


def test_invalid_argument_is_typed_and_not_retried(server: FakeServer, config: ClientConfig) -> None:
    violations = [("tenant.tenant_id", "must start with a letter")]
    status = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, "bad tenant", Reason.INVALID_ARGUMENT, violations=violations
    )
    server.script.fail_next(status)
    with Client(config) as client, pytest.raises(InvalidArgument) as caught:
        client.admin.CreateTenant(create_request())
    error = caught.value
    assert (error.reason, error.domain, error.message) == (
        Reason.INVALID_ARGUMENT,
        ERROR_DOMAIN,
        "bad tenant",
    )
    assert error.field_violations == (FieldViolation("tenant.tenant_id", "must start with a letter"),)
    assert len(server.script.calls) == 1


def test_resource_exhausted_carries_retry_delay(server: FakeServer, config: ClientConfig) -> None:
    status = rich_status(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", Reason.RATE_LIMITED, retry_delay_ms=250
    )
    server.script.fail_next(status)
    with Client(config) as client, pytest.raises(ResourceExhausted) as caught:
        client.meta.Ping(meta_pb2.PingRequest())
    assert (caught.value.reason, caught.value.retry_delay_ms) == (Reason.RATE_LIMITED, 250)
    assert len(server.script.calls) == 1


def test_not_found_from_servicer(config: ClientConfig) -> None:
    with Client(config) as client, pytest.raises(NotFound) as caught:
        client.admin.GetTenant(admin_pb2.GetTenantRequest(tenant_id="nobody"))
    assert caught.value.reason == Reason.TENANT_NOT_FOUND
    assert str(caught.value) == "NOT_FOUND TENANT_NOT_FOUND: no tenant nobody"


def test_unreachable_endpoint_is_unavailable() -> None:
    config = ClientConfig(endpoint="127.0.0.1:1", retry_attempts_max=1, default_timeout_ms=2_000)
    with Client(config) as client, pytest.raises(Unavailable) as caught:
        client.meta.Ping(meta_pb2.PingRequest())
    assert caught.value.reason == ""
