"""Redemptions reserve shares of a holding, on every backend: an order and its reservation are one
conditional batch of the holder shard, so racing redemptions never take more than is held, and a
cancellation gives the shares back."""

from __future__ import annotations

import asyncio
import uuid

import pyarrow as pa
import pytest
from jubao.reasons import Reason
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError
from jubao_server.fundta import segments
from jubao_server.fundta.agency import Agency, OrderRequest, parse_order_id
from jubao_server.fundta.model import Calendar, Fund, FundKind, FundStatus, Lot, OrderKind, Position
from jubao_server.fundta.tables import HOLDERS
from jubao_server.platform.idempotency import Claim
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import StorageBackend
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind

SHARDS = 4


def _manager() -> Tenant:
    """A fund house of its own per test (the Cassandra keyspace is shared)."""
    return Tenant(
        f"m{uuid.uuid4().hex[:20]}",
        "Manager",
        TenantKind.FUND_HOUSE,
        frozenset({Product.FUND_TA}),
        Quota(100, 100, 10),
    )


def _claim() -> Claim:
    return Claim(fresh=True, claimed_ms=SYSTEM_CLOCK.wall_ms())


async def _fund(agency: Agency, manager: Tenant) -> Fund:
    code = f"T{uuid.uuid4().hex[:10].upper()}"
    fund = Fund(
        code, "", "Test", FundKind.BOND, "CNY", FundStatus.OPEN, 100, 0, (), (),
        Calendar("Asia/Shanghai", "15:00", ()), 4, 0, 0, 0, 0,
    )  # fmt: skip
    return await agency.create_fund(manager, fund, _claim())


async def _holding(
    backend: StorageBackend, fund: Fund, manager: Tenant, account: str, fund_account: str, *, shares: int
) -> None:
    """A registered position, as a day-close leaves it."""
    position = Position(
        manager.tenant_id, account, fund_account, shares, (Lot("2026-11-02", shares),), 0, 0, 0, "2026-11-02"
    )
    partition = HOLDERS.partition(
        manager.tenant_id, fund.fund_code, shard_of(fund_account, fund.holder_shard_count)
    )
    shard = await segments.read_shard(backend, partition)
    table = pa.concat_tables([*shard.chunks, segments.table_of([position])])
    await segments.register(backend, partition, table)


def _redeem(fund: Fund, account: str, shares: int) -> OrderRequest:
    return OrderRequest(fund.fund_code, account, OrderKind.REDEMPTION, 0, shares, uuid.uuid4().hex)


async def test_racing_redemptions_never_take_more_than_is_held(backend: StorageBackend) -> None:
    agency = Agency(backend, SYSTEM_CLOCK, b"k" * 32, SHARDS)
    manager = _manager()
    fund = await _fund(agency, manager)
    investor = await agency.open_investor(manager, "alice", "id_card:1", "Alice", _claim())
    await _holding(backend, fund, manager, "alice", investor.fund_account_id, shares=100_00)

    outcomes = await asyncio.gather(
        *(agency.create_order(manager, _redeem(fund, "alice", 60_00), _claim()) for _ in range(3)),
        return_exceptions=True,
    )
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, ApiError)]
    assert len(accepted) == 1 and len(refused) == 2, outcomes
    assert {e.reason for e in refused} == {Reason.INSUFFICIENT_SHARES}
    holding = await agency.get_holding(manager, fund.fund_code, "alice", manager.tenant_id)
    assert (holding.position.shares, holding.available_shares) == (100_00, 40_00)

    # Cancelling gives the reserved shares back; then the whole holding may go.
    ref = parse_order_id(accepted[0].order_id)
    assert ref is not None
    await agency.cancel_order(manager, ref, _claim())
    holding = await agency.get_holding(manager, fund.fund_code, "alice", manager.tenant_id)
    assert holding.available_shares == 100_00
    whole = await agency.create_order(manager, _redeem(fund, "alice", 100_00), _claim())
    assert whole.shares == 100_00
    with pytest.raises(ApiError) as caught:
        await agency.create_order(manager, _redeem(fund, "alice", 1), _claim())
    assert caught.value.reason is Reason.INSUFFICIENT_SHARES


async def test_a_retry_of_an_order_finds_what_its_first_attempt_wrote(backend: StorageBackend) -> None:
    agency = Agency(backend, SYSTEM_CLOCK, b"k" * 32, SHARDS)
    manager = _manager()
    fund = await _fund(agency, manager)
    investor = await agency.open_investor(manager, "alice", "id_card:1", "Alice", _claim())
    await _holding(backend, fund, manager, "alice", investor.fund_account_id, shares=10_00)
    request = _redeem(fund, "alice", 10_00)
    claim = _claim()
    first = await agency.create_order(manager, request, claim)
    # The first attempt's answer was lost: the retry (its claim not fresh) finds the order, reserved once.
    again = await agency.create_order(manager, request, Claim(fresh=False, claimed_ms=claim.claimed_ms))
    assert again == first
    holding = await agency.get_holding(manager, fund.fund_code, "alice", manager.tenant_id)
    assert holding.available_shares == 0
