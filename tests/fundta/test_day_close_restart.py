"""A day-close cut short and started again gives the same result bit for bit, on every backend: two
funds get the same orders; one closes in one go, the other dies partway through committing its holder
shards (a storage error on a commit batch) and is run again. Their positions, confirmations and results
are equal, and no order is confirmed twice."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from jubao_server import limits
from jubao_server.fundta import segments, settlement
from jubao_server.fundta.agency import Agency, OrderRequest, order_kind
from jubao_server.fundta.dayclose import DayCloses
from jubao_server.fundta.model import (
    Calendar,
    Fund,
    FundKind,
    FundStatus,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    PurchaseFeeTier,
    decode,
)
from jubao_server.fundta.tables import HOLDERS
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.platform.idempotency import Claim
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Bound,
    RowQuery,
    StorageBackend,
    StorageError,
)
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind

from tests.fundta.support import SetClock, shanghai_ms

SHARDS = 4
FRIDAY = datetime.date(2026, 12, 4)
INVESTORS = 12


async def _fund_with_orders(agency: Agency, manager: Tenant, clock: SetClock) -> Fund:
    code = f"R{uuid.uuid4().hex[:10].upper()}"
    fund = Fund(
        code, "", "Restart", FundKind.BOND, "CNY", FundStatus.ISSUING, 100, 0,
        (PurchaseFeeTier(0, "0.012", 0),), (), Calendar("Asia/Shanghai", "15:00", ()), 4, 0, 0, 0, 0,
    )  # fmt: skip
    created = await agency.create_fund(manager, fund, Claim(True, claimed_ms=clock.wall_ms()))
    for i in range(INVESTORS):
        investor = await agency.open_investor(
            manager, f"inv-{i}", f"id_card:{i}", "", Claim(True, claimed_ms=clock.wall_ms())
        )
        for j in range(1 + i % 3):
            request = OrderRequest(
                code,
                investor.trading_account_id,
                OrderKind.SUBSCRIPTION,
                1000_00 + 333 * i + j,
                0,
                f"s-{i}-{j}",
            )
            await agency.create_order(manager, request, Claim(True, claimed_ms=clock.wall_ms()))
    return created


async def _shards(backend: StorageBackend, fund: Fund, day: str) -> list[tuple[list[Position], list[Order]]]:
    """Every shard's positions, and its orders of `day` without their fund-specific ids and times."""
    found = []
    for shard in range(SHARDS):
        partition = HOLDERS.partition(fund.manager_id, fund.fund_code, shard)
        positions = await segments.read_shard(backend, partition)
        kind = order_kind(day)
        orders = await backend.read_page(
            RowQuery(partition, Bound((kind,), True), Bound((kind,), True), limit=1000)
        )
        found.append((
            [p for chunk in positions.chunks for p in segments.positions_of(chunk)],
            sorted(
                (msgspec.structs.replace(
                    decode(r["record"], Order), order_id="", fund_code="", create_time_ms=0, update_time_ms=0
                ) for r in orders.rows),
                key=lambda o: (o.trading_account_id, o.request_id),
            ),
        ))  # fmt: skip
    return found


async def test_a_day_close_cut_short_resumes_to_the_same_result(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 16:00:00"))
    manager = Tenant(
        f"m{uuid.uuid4().hex[:20]}",
        "Manager",
        TenantKind.FUND_HOUSE,
        frozenset({Product.FUND_TA}),
        Quota(100, 100, 10),
    )
    clock.set_local("2026-12-04 10:00:00")
    agency = Agency(backend, clock, b"k" * 32, SHARDS)
    ledger = Ledger(backend, PaymentsSettings(shard_count=SHARDS), clock=clock)
    await ledger.start()
    try:
        await _close_twice(backend, agency, ledger, manager, clock=clock, monkeypatch=monkeypatch)
    finally:
        await ledger.stop()


async def _close_twice(
    backend: StorageBackend,
    agency: Agency,
    ledger: Ledger,
    manager: Tenant,
    *,
    clock: SetClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = await _fund_with_orders(agency, manager, clock)
    cut = await _fund_with_orders(agency, manager, clock)
    clock.set_local("2026-12-04 16:00:00")
    # Small commit batches, so a shard's commit takes several.
    monkeypatch.setattr(limits, "fundta_close_batch_rows_max", 4)
    closes = DayCloses(agency, backend, clock, ledger)
    await closes.start(manager, whole.fund_code, FRIDAY)
    await closes.stop()  # the task it launched: this test runs the day-close itself
    done = await closes.run(manager.tenant_id, whole.fund_code, "2026-12-04")

    await closes.start(manager, cut.fund_code, FRIDAY)
    await closes.stop()
    writes = 0
    write = backend.write

    async def dies_on_the_fifth_commit_batch(batch: Batch) -> BatchOutcome:
        nonlocal writes
        if batch.partition.table is HOLDERS and batch.puts and not batch.conditions:
            writes += 1
            if writes == 5:
                raise StorageError("the server died here")
        return await write(batch)

    died: Callable[[Batch], Awaitable[BatchOutcome]] = dies_on_the_fifth_commit_batch
    monkeypatch.setattr(backend, "write", died)
    with pytest.raises(StorageError):
        await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04")
    monkeypatch.setattr(backend, "write", write)
    resumed = await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04")
    assert writes == 5

    assert resumed.result == done.result and done.result is not None
    assert done.result.orders_confirmed == sum(1 + i % 3 for i in range(INVESTORS))
    assert await _shards(backend, whole, "2026-12-04") == await _shards(backend, cut, "2026-12-04")
    # Run again: nothing changes.
    assert await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04") == resumed
    shards = await _shards(backend, cut, "2026-12-04")
    assert all(o.status is OrderStatus.CONFIRMED for _, orders in shards for o in orders)
    assert sum(p.shares for positions, _ in shards for p in positions) == done.result.total_shares

    # Settled once each in the manager's ledger: the distributor (the manager, selling its own fund) paid
    # custody the subscriptions net of their fees, and the fee account their fees.
    [totals] = done.result.distributors
    for fund in (whole, cut):
        custody = await ledger.get_account(manager.tenant_id, settlement.custody_account(fund))
        fees = await ledger.get_account(manager.tenant_id, settlement.fee_account(fund))
        seller = await ledger.get_account(
            manager.tenant_id, settlement.distributor_account(fund, manager.tenant_id)
        )
        assert custody.balance.ledger_minor == totals.purchase_amount_minor - totals.purchase_fee_minor
        assert fees.balance.ledger_minor == totals.purchase_fee_minor > 0
        assert seller.balance.ledger_minor == -totals.purchase_amount_minor
    report = await ledger.reconcile(manager.tenant_id)
    assert not report.discrepancies
