"""Helpers of the fund TA tests: a clock the test sets, tenants made for a test, refusals checked."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Any, Final
from zoneinfo import ZoneInfo

import pytest
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import AsyncClient, ClientConfig
from jubao.errors import JubaoError
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Code
from jubao_server.clock import SYSTEM_CLOCK

from tests.platform.harness import Running, bearer

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")


def shanghai_ms(text: str) -> int:
    """Epoch ms of a local Asia/Shanghai time "YYYY-MM-DD HH:MM:SS"."""
    local = datetime.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)
    return int(local.timestamp() * 1000)


class SetClock:
    """The machine's clock, its wall time moved to where the test sets it (and running on from there)."""

    def __init__(self, now_ms: int) -> None:
        self._offset_ms = 0
        self.set(now_ms)

    def set(self, now_ms: int) -> None:
        self._offset_ms = now_ms - SYSTEM_CLOCK.wall_ms()

    def set_local(self, text: str) -> None:
        self.set(shanghai_ms(text))

    def wall_ms(self) -> int:
        return SYSTEM_CLOCK.wall_ms() + self._offset_ms

    def monotonic_s(self) -> float:
        return SYSTEM_CLOCK.monotonic_s()

    async def sleep(self, delay_s: float) -> None:
        await SYSTEM_CLOCK.sleep(delay_s)


def client_of(running: Running, api_key: str) -> AsyncClient:
    return AsyncClient(ClientConfig(endpoint=running.address, api_key=api_key, default_timeout_ms=10_000))


async def new_tenant(running: Running, operator_key: str, tenant_id: str, kind: int) -> str:
    """A tenant with the fund_ta product, created by the operator; its API key."""
    operator = bearer(operator_key)
    tenant = admin_pb.Tenant(
        tenant_id=tenant_id,
        display_name=f"Tenant {tenant_id}",
        kind=kind,  # type: ignore[arg-type]
        products=[admin_pb.PRODUCT_FUND_TA],
        quota=admin_pb.Quota(requests_per_s=1000, burst_requests=1000, concurrent_calls_max=64),
    )
    await running.admin.CreateTenant(admin_pb.CreateTenantRequest(tenant=tenant), metadata=operator)
    issued = await running.admin.IssueApiKey(
        admin_pb.IssueApiKeyRequest(tenant_id=tenant_id), metadata=operator
    )
    return issued.secret


async def refused(call: Awaitable[Any], code: Code, reason: str) -> JubaoError:
    with pytest.raises(JubaoError) as caught:
        await call
    assert (caught.value.code, caught.value.reason) == (code, reason), caught.value
    return caught.value


def money_market(code: str = "000198", **fields: Any) -> pb.Fund:
    """A money-market fund, open, 1 yuan minimum, on the default calendar."""
    values: dict[str, Any] = {
        "fund_code": code,
        "display_name": "Demo Money Market Fund",
        "kind": pb.FUND_KIND_MONEY_MARKET,
        "currency_code": "CNY",
        "status": pb.FUND_STATUS_OPEN,
        "minimum_purchase_minor": 100,
        **fields,
    }
    return pb.Fund(**values)


async def open_investor(client: AsyncClient, account: str, id_number: str) -> pb.Investor:
    request = pb.OpenInvestorRequest(
        trading_account_id=account, id_type=pb.ID_TYPE_ID_CARD, id_number=id_number, display_name=account
    )
    return (await client.trading.OpenInvestor(request)).investor


async def purchase(
    client: AsyncClient, code: str, account: str, amount_minor: int, request_id: str = ""
) -> pb.Order:
    request = pb.CreateOrderRequest(
        fund_code=code,
        trading_account_id=account,
        kind=pb.ORDER_KIND_PURCHASE,
        amount_minor=amount_minor,
        request_id=request_id,
    )
    return (await client.trading.CreateOrder(request)).order
