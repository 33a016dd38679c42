"""A day-close cut short and started again gives the same result bit for bit, on every backend: two
funds get the same orders; one closes in one go, the other dies partway through committing its holder
shards (a storage error on a commit batch) and is run again. Their positions (the chunks' bytes),
confirmations and results are equal, and no order is confirmed twice. The same twins show that a runner
whose shard another runner committed first goes on from it, that a shard still in the JSON layout of
earlier versions reads and closes as a columnar one (and loses its JSON rows), and that a torn chunk is
caught by its checksum."""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from jubao_server import limits
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.fundta import segments, settlement
from jubao_server.fundta.agency import Agency, OrderRequest, order_kind
from jubao_server.fundta.dayclose import DayCloses
from jubao_server.fundta.model import (
    Calendar,
    DayClose,
    Fund,
    FundKind,
    FundStatus,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    PurchaseFeeTier,
    decode,
    encode,
)
from jubao_server.fundta.tables import HOLDERS
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.platform.idempotency import Claim
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Bound,
    Delete,
    Put,
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


Shard = tuple[list[Position], list[Order], list[bytes]]


async def _shards(backend: StorageBackend, fund: Fund, day: str) -> list[Shard]:
    """Every shard's positions, its orders of `day` without their fund-specific ids and times, and the
    bytes of its chunks."""
    found = []
    for shard in range(SHARDS):
        partition = HOLDERS.partition(fund.manager_id, fund.fund_code, shard)
        positions = await segments.read_shard(backend, partition)
        chunks = await backend.read_page(
            RowQuery(partition, Bound((segments.CHUNK,), True), Bound((segments.CHUNK,), True))
        )
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
            [bytes(r["record"]) for r in chunks.rows],  # type: ignore[arg-type]
        ))  # fmt: skip
    return found


async def test_a_day_close_cut_short_resumes_to_the_same_result(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 16:00:00"))
    async with _twins(backend, clock) as (manager, agency, _, ledger, whole, cut):
        await _close_twice(
            backend, agency, ledger, manager, whole=whole, cut=cut, clock=clock, monkeypatch=monkeypatch
        )


async def _close_twice(
    backend: StorageBackend,
    agency: Agency,
    ledger: Ledger,
    manager: Tenant,
    *,
    whole: Fund,
    cut: Fund,
    clock: SetClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
            if writes >= 5:  # dead from the fifth on (shards commit concurrently: others may try too)
                raise StorageError("the server died here")
        return await write(batch)

    died: Callable[[Batch], Awaitable[BatchOutcome]] = dies_on_the_fifth_commit_batch
    monkeypatch.setattr(backend, "write", died)
    with pytest.raises(StorageError):
        await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04")
    monkeypatch.setattr(backend, "write", write)
    resumed = await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04")
    assert writes >= 5

    assert resumed.result == done.result and done.result is not None
    assert done.result.orders_confirmed == sum(1 + i % 3 for i in range(INVESTORS))
    assert await _shards(backend, whole, "2026-12-04") == await _shards(backend, cut, "2026-12-04")
    # Run again: nothing changes.
    assert await closes.run(manager.tenant_id, cut.fund_code, "2026-12-04") == resumed
    shards = await _shards(backend, cut, "2026-12-04")
    assert all(o.status is OrderStatus.CONFIRMED for _, orders, _ in shards for o in orders)
    assert sum(p.shares for positions, _, _ in shards for p in positions) == done.result.total_shares

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


@contextlib.asynccontextmanager
async def _twins(
    backend: StorageBackend, clock: SetClock
) -> AsyncIterator[tuple[Tenant, Agency, DayCloses, Ledger, Fund, Fund]]:
    """A fund house, its agency, day-closes and ledger (started, stopped at the end), and two funds
    with the same investors and orders of Friday, at 16:00."""
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
        first = await _fund_with_orders(agency, manager, clock)
        second = await _fund_with_orders(agency, manager, clock)
        clock.set_local("2026-12-04 16:00:00")
        yield manager, agency, DayCloses(agency, backend, clock, ledger), ledger, first, second
    finally:
        await ledger.stop()


async def _close(closes: DayCloses, manager: Tenant, fund: Fund, day: datetime.date) -> DayClose:
    await closes.start(manager, fund.fund_code, day)
    await closes.stop()  # the task it launched: the test runs the day-close itself
    return await closes.run(manager.tenant_id, fund.fund_code, day.isoformat())


async def test_a_runner_whose_shard_another_committed_first_goes_on_from_it(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 16:00:00"))
    async with _twins(backend, clock) as (manager, _, closes, _, alone, raced):
        done = await _close(closes, manager, alone, FRIDAY)
        write = backend.write
        raced_shards: list[object] = []

        async def another_runner_commits_first(batch: Batch) -> BatchOutcome:
            key = batch.partition.key
            commit = batch.static_values is not None and "closed_date" in batch.static_values
            if batch.partition.table is HOLDERS and commit and key not in raced_shards:
                raced_shards.append(key)
                assert (await write(batch)).applied
                outcome = await write(batch)
                assert not outcome.applied  # the closed_date it read is stale now
                return outcome
            return await write(batch)

        racing: Callable[[Batch], Awaitable[BatchOutcome]] = another_runner_commits_first
        monkeypatch.setattr(backend, "write", racing)
        result = await _close(closes, manager, raced, FRIDAY)
        monkeypatch.setattr(backend, "write", write)
        assert len(raced_shards) == SHARDS
        assert result.result == done.result
        assert await _shards(backend, raced, FRIDAY.isoformat()) == await _shards(
            backend, alone, FRIDAY.isoformat()
        )


async def test_a_shard_in_the_json_layout_reads_and_closes_as_a_columnar_one(backend: StorageBackend) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 16:00:00"))
    async with _twins(backend, clock) as (manager, agency, closes, _, columnar, legacy):
        await _close(closes, manager, columnar, FRIDAY)
        await _close(closes, manager, legacy, FRIDAY)
        # What earlier versions left: one JSON row per holder, no chunks.
        for shard in range(SHARDS):
            partition = HOLDERS.partition(manager.tenant_id, legacy.fund_code, shard)
            stored = await segments.read_shard(backend, partition)
            positions = [p for chunk in stored.chunks for p in segments.positions_of(chunk)]
            puts = tuple(
                Put(
                    (segments.LEGACY_POSITION, f"{p.distributor_id}/{p.trading_account_id}"),
                    {"record": encode(p), "version": 1},
                )
                for p in positions
            )
            deletes = tuple(Delete(segments.chunk_key(c)) for c in range(limits.fundta_position_chunks))
            await backend.write(Batch(partition, puts, deletes))
        for i in range(INVESTORS):
            holdings = [
                await agency.get_holding(manager, fund.fund_code, f"inv-{i}", manager.tenant_id)
                for fund in (columnar, legacy)
            ]
            assert holdings[0] == holdings[1] and holdings[0].position.shares > 0

        monday = datetime.date(2026, 12, 7)
        clock.set_local("2026-12-07 16:00:00")
        closed = [await _close(closes, manager, fund, monday) for fund in (columnar, legacy)]
        assert closed[0].result == closed[1].result and closed[0].result is not None
        assert await _shards(backend, legacy, monday.isoformat()) == await _shards(
            backend, columnar, monday.isoformat()
        )
        for shard in range(SHARDS):
            partition = HOLDERS.partition(manager.tenant_id, legacy.fund_code, shard)
            kind = (segments.LEGACY_POSITION,)
            assert not (
                await backend.read_page(RowQuery(partition, Bound(kind, True), Bound(kind, True)))
            ).rows


async def test_a_torn_chunk_is_caught_by_its_checksum(backend: StorageBackend) -> None:
    clock = SetClock(shanghai_ms("2026-12-04 16:00:00"))
    async with _twins(backend, clock) as (manager, agency, closes, _, fund, _):
        await _close(closes, manager, fund, FRIDAY)
        investor = await agency.get_investor(manager, "inv-0")
        shard = shard_of(investor.fund_account_id, SHARDS)
        partition = HOLDERS.partition(manager.tenant_id, fund.fund_code, shard)
        key = segments.chunk_key(segments.chunk_of(f"{manager.tenant_id}/inv-0"))
        row = await backend.read_row(partition, key)
        assert row is not None
        data = bytes(row["record"])  # type: ignore[arg-type]
        torn = data[: len(data) // 2] + bytes(len(data) - len(data) // 2)
        await backend.write(Batch(partition, (Put(key, {"record": torn}),)))
        with pytest.raises(ApiError) as caught:
            await agency.get_holding(manager, fund.fund_code, "inv-0", manager.tenant_id)
        assert caught.value.code is ErrorCode.INTERNAL
        with pytest.raises(ApiError):
            await segments.read_shard(backend, partition)
