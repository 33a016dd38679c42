"""Quotas: a tenant over its rate gets RESOURCE_EXHAUSTED with RetryInfo; others keep being served."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.errors import Reason, error_from_rpc
from jubao.meta.v1 import meta_pb2
from jubao_server.errors import ApiError
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind
from jubao_server.tenancy.quotas import QuotaGate

from tests.platform.harness import Running, bearer
from tests.platform.test_admin import new_tenant
from tests.sim.virtual_time import SimClock

# Below the server's concurrent_streams_max, so every call reaches the pipeline on one connection.
flood_calls = 200


async def _slow_tenant_key(running: Running, operator_key: str, rate: int) -> str:
    operator = bearer(operator_key)
    await running.admin.CreateTenant(
        pb.CreateTenantRequest(tenant=new_tenant("noisy-bank", rate)), metadata=operator
    )
    issued = await running.admin.IssueApiKey(pb.IssueApiKeyRequest(tenant_id="noisy-bank"), metadata=operator)
    return issued.secret


async def _ping(running: Running, key: str) -> grpc.StatusCode:
    try:
        await running.meta.Ping(meta_pb2.PingRequest(), metadata=bearer(key))
    except grpc.aio.AioRpcError as error:
        typed = error_from_rpc(error)
        assert (
            typed.reason == Reason.RATE_LIMITED
            and typed.retry_delay_ms is not None
            and typed.retry_delay_ms > 0
        )
        return error.code()
    return grpc.StatusCode.OK


async def test_flooding_tenant_is_throttled_while_another_is_served(
    running: Running, keys: dict[str, str]
) -> None:
    noisy = await _slow_tenant_key(running, keys["demo-operator"], rate=20)
    flood = asyncio.gather(*(_ping(running, noisy) for _ in range(flood_calls)))
    quiet = [await _ping(running, keys["demo-bank"]) for _ in range(40)]
    noisy_codes = await flood
    assert quiet == [grpc.StatusCode.OK] * 40
    granted = noisy_codes.count(grpc.StatusCode.OK)
    assert 20 <= granted < flood_calls / 2, granted
    assert noisy_codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == flood_calls - granted


def _tenant(quota: Quota) -> Tenant:
    return Tenant("unit-bank", "Unit", TenantKind.BANK, frozenset({Product.PAYMENTS}), quota)


def test_concurrency_cap_refuses_and_frees_slots() -> None:
    gate = QuotaGate(SimClock())
    tenant = _tenant(Quota(requests_per_s=1000, burst_requests=1000, concurrent_calls_max=2))
    first, second = gate.admit(tenant), gate.admit(tenant)
    with pytest.raises(ApiError) as refused:
        gate.admit(tenant)
    assert refused.value.reason == Reason.CONCURRENCY_LIMITED and refused.value.retry_delay_ms
    first.release()
    gate.admit(tenant).release()
    second.release()
    assert gate.in_flight("unit-bank") == 0


def test_token_bucket_refills_at_the_rate_and_reports_the_wait() -> None:
    clock = SimClock()
    gate = QuotaGate(clock)
    tenant = _tenant(Quota(requests_per_s=10, burst_requests=2, concurrent_calls_max=10))
    gate.admit(tenant).release()
    gate.admit(tenant).release()
    with pytest.raises(ApiError) as refused:
        gate.admit(tenant)
    assert refused.value.reason == Reason.RATE_LIMITED and refused.value.retry_delay_ms == 100
    clock.advance(0.1)
    gate.admit(tenant).release()
    raised = _tenant(Quota(requests_per_s=1000, burst_requests=1000, concurrent_calls_max=10))
    clock.advance(0.1)
    gate.admit(raised).release()
