"""`fundta_day_close_holders_per_s`: the day-close of a money-market fund with many holders and a day of
orders, on one backend, in this process: the fund's positions and orders are written straight to storage
in the holder shards' layout (as a day-close and the orders leave them), then the day-close runs from its
record to the end (income carried forward for every holder, the orders confirmed, the settlement posted
in the manager's payments ledger) and is timed whole."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

from jubao_server.clock import Clock
from jubao_server.fundta.agency import CLOSE, FUND, POSITION, PRICE, Agency, order_kind
from jubao_server.fundta.dayclose import DayCloses
from jubao_server.fundta.decimals import fixed
from jubao_server.fundta.model import (
    Calendar,
    DayClose,
    DayClosePhase,
    DayCloseState,
    Fund,
    FundKind,
    FundStatus,
    Lot,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    Price,
    encode,
)
from jubao_server.fundta.tables import FUND_CODES, FUNDS, HOLDERS
from jubao_server.invariants import ensure
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import PLATFORM_SCOPE, Batch, Put, StorageBackend, write_all

from loadtest.report import Figure, figure

SHARDS: Final = 64
# Rows of one setup batch (one holder shard's partition each).
SETUP_BATCH_ROWS: Final = 500
TRADE_DATE: Final = datetime.date(2026, 12, 7)
DISTRIBUTORS: Final = ("bench-platform", "bench-bank")
BENCH_IDENTITY_KEY: Final = b"bench identity key, not a secret"


async def run_fundta_bench(backend: StorageBackend, clock: Clock, holders: int, orders: int) -> list[Figure]:
    """The day-close of a fund of `holders` holders and `orders` purchases of its trade date."""
    manager = f"bench-fund-{uuid.uuid4().hex[:8]}"
    fund = await _write_fund(backend, manager, holders)
    await _write_holders(backend, fund, holders, orders)
    ledger = Ledger(backend, PaymentsSettings(shard_count=16), clock=clock)
    await ledger.start()
    try:
        closes = DayCloses(Agency(backend, clock, BENCH_IDENTITY_KEY, SHARDS), backend, clock, ledger)
        started = time.perf_counter()
        record = await closes.run(manager, fund.fund_code, TRADE_DATE.isoformat())
        seconds = time.perf_counter() - started
    finally:
        await ledger.stop()
    ensure(record.result is not None and record.result.orders_confirmed == orders, "the bench's close")
    notes = (
        f"{holders:,} holders in {SHARDS} holder shards, {orders:,} purchases of T, income of 3 natural "
        f"dates carried forward, settled for {len(DISTRIBUTORS)} distributors; the whole day-close took "
        f"{seconds:.1f} s"
    )
    return [
        figure(
            "fundta_day_close_holders_per_s", round(holders / seconds, 1), "holders/s", backend.name, notes
        )
    ]


async def _write_fund(backend: StorageBackend, manager: str, holders: int) -> Fund:
    code = f"B{uuid.uuid4().hex[:10].upper()}"
    total = holders * 10_000_00
    fund = Fund(
        code, manager, "Bench Money Market", FundKind.MONEY_MARKET, "CNY", FundStatus.OPEN, 100, 0, (), (),
        Calendar("Asia/Shanghai", "15:00", ()), 4, SHARDS, total, 0, 0,
        last_closed_date=(TRADE_DATE - datetime.timedelta(days=3)).isoformat(),
        fast_redemption_cap_minor=1_000_000,
    )  # fmt: skip
    puts = [Put(FUND, {"record": encode(fund), "version": 1})]
    for back in range(3):
        day = (TRADE_DATE - datetime.timedelta(days=back)).isoformat()
        price = Price(code, day, fixed(Decimal(1), 4), holders * 55, "", "", 0, "CNY", 0)
        puts.append(Put((PRICE, day), {"record": encode(price), "version": 1}))
    record = DayClose(
        code, TRADE_DATE.isoformat(), DayCloseState.RUNNING, DayClosePhase.SEALING, SHARDS, 0, 0, 0
    )
    puts.append(Put((CLOSE, TRADE_DATE.isoformat()), {"record": encode(record), "version": 1}))
    await backend.write(Batch(FUNDS.partition(manager, code), tuple(puts)))
    registry = Put((), {"manager_id": manager, "create_time_ms": 0})
    await backend.write(Batch(FUND_CODES.partition(PLATFORM_SCOPE, code), (registry,)))
    return fund


async def _write_holders(backend: StorageBackend, fund: Fund, holders: int, orders: int) -> None:
    """Every holder's position (10,000.00 shares bought long ago) and the orders of T."""
    rows: dict[int, list[Put]] = {shard: [] for shard in range(SHARDS)}
    last_closed = fund.last_closed_date
    for i in range(holders):
        distributor = DISTRIBUTORS[i % len(DISTRIBUTORS)]
        account, fund_account = f"a{i}", f"F{i:020d}"
        shard = shard_of(fund_account, SHARDS)
        position = Position(
            distributor,
            account,
            fund_account,
            10_000_00,
            (Lot("2026-01-05", 10_000_00),),
            0,
            0,
            0,
            last_closed,
        )
        rows[shard].append(
            Put((POSITION, f"{distributor}/{account}"), {"record": encode(position), "version": 1})
        )
        if i < orders:
            order_id = f"{fund.fund_code}-20261207-{shard:04d}-{i:016x}"
            order = Order(
                order_id, fund.fund_code, distributor, account, fund_account, OrderKind.PURCHASE,
                OrderStatus.ACCEPTED, TRADE_DATE.isoformat(), 1000_00, 0, "CNY", f"r{i}", 0, 0,
            )  # fmt: skip
            rows[shard].append(
                Put((order_kind(TRADE_DATE.isoformat()), order_id), {"record": encode(order), "version": 1})
            )
    batches = [
        Batch(HOLDERS.partition(fund.manager_id, fund.fund_code, shard), tuple(chunk))
        for shard, puts in rows.items()
        for chunk in _chunks(puts)
    ]
    await write_all(backend, batches)


def _chunks(puts: Sequence[Put]) -> list[Sequence[Put]]:
    return [puts[i : i + SETUP_BATCH_ROWS] for i in range(0, len(puts), SETUP_BATCH_ROWS)]
