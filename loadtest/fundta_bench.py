"""`fundta_day_close_holders_per_s`: the day-close of a money-market fund with many holders and a day of
orders, on one backend, in this process: the fund's positions are registered through the day-close's
columnar path (one batch of Arrow chunks per holder shard, `segments.register`) and its orders written
straight to storage as the orders leave them, then the day-close runs from its
record to the end (income carried forward for every holder, the orders confirmed, the settlement posted
in the manager's payments ledger) and is timed whole."""

from __future__ import annotations

import datetime
import os
import time
import uuid
from decimal import Decimal
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from jubao_server.clock import Clock
from jubao_server.fundta import segments
from jubao_server.fundta.agency import CLOSE, FUND, PRICE, Agency, order_kind
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
    Order,
    OrderKind,
    OrderStatus,
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
# Order rows of one setup batch (one holder shard's partition each).
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
        load = os.getloadavg()[0]
        started = time.perf_counter()
        record = await closes.run(manager, fund.fund_code, TRADE_DATE.isoformat())
        seconds = time.perf_counter() - started
    finally:
        await ledger.stop()
    result = record.result
    ensure(result is not None and (result.orders_confirmed, result.holders) == (orders, holders), "the close")
    notes = (
        f"{holders:,} holders in {SHARDS} holder shards, {orders:,} purchases of T, income of 3 natural "
        f"dates carried forward, settled for {len(DISTRIBUTORS)} distributors; the whole day-close took "
        f"{seconds:.1f} s (target: under 60 s for 1,000,000 holders; load average {load:.1f} at its start)"
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
    """Every holder's position (10,000.00 shares bought long ago), registered shard by shard through the
    day-close's columnar path (one batch of Arrow chunks per holder shard), and the orders of T."""
    accounts = [f"a{i}" for i in range(holders)]
    fund_accounts = [f"F{i:020d}" for i in range(holders)]
    distributors = [DISTRIBUTORS[i % len(DISTRIBUTORS)] for i in range(holders)]
    columns = {
        "distributor_id": distributors,
        "trading_account_id": accounts,
        "fund_account_id": fund_accounts,
        "shares": pa.repeat(pa.scalar(10_000_00), holders),
        "income_lot_shares": pa.repeat(pa.scalar(0), holders),
        "lot_dates": pa.repeat(pa.scalar(["2026-01-05"]), holders),
        "lot_shares": pa.repeat(pa.scalar([10_000_00]), holders),
        "released_shares": pa.repeat(pa.scalar(0), holders),
        "last_income_minor": pa.repeat(pa.scalar(0), holders),
        "income_total_minor": pa.repeat(pa.scalar(0), holders),
        "closed_date": pa.repeat(pa.scalar(fund.last_closed_date), holders),
        "fast_released_shares": pa.repeat(pa.scalar(0), holders),
        "dividend_method": pa.nulls(holders, pa.string()),
    }
    table = pa.Table.from_pydict(columns, schema=segments.SCHEMA)
    shards = pa.array([shard_of(account, SHARDS) for account in fund_accounts], pa.int64())
    for shard in range(SHARDS):
        partition = HOLDERS.partition(fund.manager_id, fund.fund_code, shard)
        await segments.register(backend, partition, table.filter(pc.equal(shards, shard)))
    rows: dict[int, list[Put]] = {shard: [] for shard in range(SHARDS)}
    for i in range(orders):
        shard = shard_of(fund_accounts[i], SHARDS)
        order_id = f"{fund.fund_code}-20261207-{shard:04d}-{i:016x}"
        order = Order(
            order_id, fund.fund_code, distributors[i], accounts[i], fund_accounts[i], OrderKind.PURCHASE,
            OrderStatus.ACCEPTED, TRADE_DATE.isoformat(), 1000_00, 0, "CNY", f"r{i}", 0, 0,
        )  # fmt: skip
        rows[shard].append(
            Put((order_kind(TRADE_DATE.isoformat()), order_id), {"record": encode(order), "version": 1})
        )
    batches = [
        Batch(
            HOLDERS.partition(fund.manager_id, fund.fund_code, shard), tuple(puts[i : i + SETUP_BATCH_ROWS])
        )
        for shard, puts in rows.items()
        for i in range(0, len(puts), SETUP_BATCH_ROWS)
    ]
    await write_all(backend, batches)
