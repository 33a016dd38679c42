"""A seeded randomized run of the fund TA with an auditor, on every backend: a money-market fund sold by its
manager and a distributor; each trade date random purchases, redemptions (some of more than is held),
cancellations, fast redemptions (some over the cap) and incomes, then the day-close, which a storage
fault sometimes kills partway through committing (it is started again). After each day-close the auditor
checks, from storage and the payments ledger:

* the fund's shares equal the sum of the positions, none negative, each position's lots add up to it;
* every order placed and not cancelled is confirmed exactly once (CONFIRMED or FAILED), and the shares
  are what was bought, plus the income distributed, less what was redeemed;
* the income distributed plus the residuals equals the income published;
* money settled equals money confirmed: each settlement account's balance is the confirmations' sum,
  and `Reconcile` is clean.

The seed is printed (`FUNDTA_SEED=<seed>` runs it again); `FUNDTA_DAYS` sets the number of trade dates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import random
import uuid
from collections.abc import Iterable

import msgspec
import pytest
from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError
from jubao_server.fundta import calendar, segments, settlement
from jubao_server.fundta.agency import Agency, OrderRequest, order_kind, parse_order_id
from jubao_server.fundta.dayclose import DayCloses, next_close_date
from jubao_server.fundta.model import (
    Calendar,
    Fund,
    FundKind,
    FundStatus,
    LargeRedemptionChoice,
    LargeRedemptionRule,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    Price,
    PurchaseFeeTier,
    RedemptionFeeTier,
    decode,
)
from jubao_server.fundta.tables import FUNDS, HOLDERS
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.platform.idempotency import Claim
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Bound,
    PartitionRef,
    Row,
    RowQuery,
    StorageBackend,
    StorageError,
)
from jubao_server.tenancy.model import Product, Quota, Tenant, TenantKind
from jubao_server.tenancy.store import TenantStore

from tests.fundta.support import SetClock, shanghai_ms

SHARDS = 4
INVESTORS = 10
ORDERS_PER_DAY = 16


@dataclasses.dataclass
class World:
    """What the simulation drives and audits."""

    rng: random.Random
    backend: StorageBackend
    agency: Agency
    ledger: Ledger
    manager: Tenant
    clock: SetClock


@dataclasses.dataclass
class Tally:
    """What the clients were told: the orders accepted and cancelled, the income published."""

    placed: dict[str, Order] = dataclasses.field(default_factory=dict)
    cancelled: set[str] = dataclasses.field(default_factory=set)
    closed: list[str] = dataclasses.field(default_factory=list)
    income_minor: int = 0


class Kill:
    """Makes the n-th commit batch of a day-close (T's confirmed orders, or a shard's chunks) and every
    one after fail, as if its server died there."""

    def __init__(self, backend: StorageBackend, at: int) -> None:
        self._write = backend.write
        self._at = at
        self._seen = 0

    async def write(self, batch: Batch) -> BatchOutcome:
        if batch.partition.table is HOLDERS and batch.puts:
            self._seen += 1
            if self._seen >= self._at:
                raise StorageError("killed mid-day-close")
        return await self._write(batch)


async def test_random_days_of_a_money_market_fund_keep_every_invariant(
    backend: StorageBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("FUNDTA_SEED", random.randrange(2**32)))
    days = int(os.environ.get("FUNDTA_DAYS", "6"))
    print(f"fund TA simulation on {backend.name}: FUNDTA_SEED={seed} FUNDTA_DAYS={days}")
    rng = random.Random(seed)
    monkeypatch.setattr(limits, "fundta_close_batch_rows_max", 6)
    clock = SetClock(shanghai_ms("2026-12-04 09:00:00"))
    manager = _tenant(TenantKind.FUND_HOUSE)
    distributor = _tenant(TenantKind.PLATFORM)
    assert await TenantStore(backend, SYSTEM_CLOCK).create_tenant(distributor) is not None
    agency = Agency(backend, clock, b"s" * 32, SHARDS)
    ledger = Ledger(backend, PaymentsSettings(shard_count=SHARDS), clock=clock)
    await ledger.start()
    closes = DayCloses(agency, backend, clock, ledger)
    world = World(rng, backend, agency, ledger, manager, clock)
    try:
        rule = rng.choice(tuple(LargeRedemptionRule))
        fund = await _fund(agency, manager, clock, rule)
        await agency.grant_fund(manager, fund.fund_code, distributor.tenant_id, _claim(clock))
        sellers = [manager, distributor]
        for i in range(INVESTORS):
            for seller in sellers:
                await agency.open_investor(seller, f"inv-{i}", f"id_card:{i}", "", _claim(clock))
        tally = Tally()
        for _ in range(days):
            fund = await agency.get_fund(manager, fund.fund_code)
            day = next_close_date(fund)
            clock.set_local(f"{day.isoformat()} 10:00:00")
            for _ in range(ORDERS_PER_DAY):
                await _random_order(world, rng.choice(sellers), fund, tally)
            for income_day in _income_days(fund, day):
                income = rng.choice((0, 1, 7, 100, 12_345))
                await agency.publish_price(manager, fund.fund_code, income_day, None, income)
                tally.income_minor += income
            clock.set_local(f"{day.isoformat()} 16:00:00")
            await closes.start(manager, fund.fund_code, day)
            await closes.stop()
            if rng.random() < 0.5:
                kill = Kill(backend, rng.randint(1, 6))
                monkeypatch.setattr(backend, "write", kill.write)
                with contextlib.suppress(StorageError):
                    await closes.run(manager.tenant_id, fund.fund_code, day.isoformat())
                monkeypatch.undo()
                monkeypatch.setattr(limits, "fundta_close_batch_rows_max", 6)
            record = await closes.run(manager.tenant_id, fund.fund_code, day.isoformat())
            tally.closed.append(day.isoformat())
            result = record.result
            if result is not None:
                print(f"  {day}: {result.orders_confirmed} confirmed, ratio {result.redemption_ratio}")
            await _audit(world, fund.fund_code, tally)
    finally:
        await closes.stop()
        await ledger.stop()


async def _random_order(world: World, seller: Tenant, fund: Fund, tally: Tally) -> None:
    rng, agency, clock = world.rng, world.agency, world.clock
    account = f"inv-{rng.randrange(INVESTORS)}"
    roll = rng.random()
    try:
        if roll < 0.45:
            request = OrderRequest(
                fund.fund_code,
                account,
                OrderKind.PURCHASE,
                rng.choice((50, 100, 999, 10_000_00, 123_456)),
                0,
                uuid.uuid4().hex,
            )
        elif roll < 0.8:
            holding = await agency.get_holding(seller, fund.fund_code, account, seller.tenant_id)
            shares = max(
                1,
                rng.choice(
                    (holding.available_shares // 2, holding.available_shares, holding.available_shares + 1)
                ),
            )
            kind = OrderKind.FAST_REDEMPTION if roll > 0.65 else OrderKind.REDEMPTION
            choice = rng.choice(tuple(LargeRedemptionChoice))
            request = OrderRequest(fund.fund_code, account, kind, 0, shares, uuid.uuid4().hex, choice)
        else:
            accepted = [
                o
                for o in tally.placed.values()
                if o.status is OrderStatus.ACCEPTED
                and o.order_id not in tally.cancelled
                and o.distributor_id == seller.tenant_id
                and o.trade_date == next_close_date(fund).isoformat()
            ]
            if not accepted:
                return
            ref = parse_order_id(rng.choice(accepted).order_id)
            assert ref is not None
            cancelled = await agency.cancel_order(seller, ref, _claim(clock))
            tally.cancelled.add(cancelled.order_id)
            return
        order = await agency.create_order(seller, request, _claim(clock))
        tally.placed[order.order_id] = order
    except ApiError as error:
        assert error.reason in {"BELOW_MINIMUM", "INSUFFICIENT_SHARES", "FAST_REDEMPTION_LIMIT"}, error


async def _audit(world: World, code: str, tally: Tally) -> None:
    backend, agency, ledger, manager = world.backend, world.agency, world.ledger, world.manager
    fund = await agency.get_fund(manager, code)
    positions: list[Position] = []
    orders: dict[str, Order] = {}
    for shard in range(SHARDS):
        partition = HOLDERS.partition(manager.tenant_id, code, shard)
        stored = await segments.read_shard(backend, partition)
        positions += [p for chunk in stored.chunks for p in segments.positions_of(chunk)]
        for closed in _closed_dates(fund, tally):
            for row in await _rows(backend, partition, order_kind(closed)):
                order = decode(row["record"], Order)
                orders[order.order_id] = order
    assert fund.total_shares == sum(p.shares for p in positions)
    for position in positions:
        assert position.shares >= 0 and sum(lot.shares for lot in position.lots) == position.shares, position
    done = (OrderStatus.CONFIRMED, OrderStatus.FAILED, OrderStatus.PARTIALLY_CONFIRMED)
    for order_id, placed in tally.placed.items():
        if placed.trade_date > fund.last_closed_date:
            continue
        order = orders[order_id]
        if order_id in tally.cancelled:
            assert order.status is OrderStatus.CANCELLED and order.confirmation is None
            continue
        assert order.status in done and order.confirmation is not None, order
    bought, sold, fees, paid_in, paid_out = _confirmed_sums(orders.values())
    prices = await backend.read_page(
        RowQuery(
            FUNDS.partition(manager.tenant_id, code),
            Bound(("price",), True),
            Bound(("price",), True),
            limit=1000,
        )
    )
    distributed = 0
    for row in prices.rows:
        price = decode(row["record"], Price)
        if price.income_per_10k_shares:
            distributed += price.income_minor - price.residual_minor
    assert fund.total_shares == bought + distributed - sold
    assert sum(p.income_total_minor for p in positions) == distributed
    custody = await ledger.get_account(manager.tenant_id, settlement.custody_account(fund))
    fee_account = await ledger.get_account(manager.tenant_id, settlement.fee_account(fund))
    assert fee_account.balance.ledger_minor == fees
    assert custody.balance.ledger_minor == paid_in - paid_out - fees
    report = await ledger.reconcile(manager.tenant_id)
    assert not report.discrepancies, report


def _confirmed_sums(orders: Iterable[Order]) -> tuple[int, int, int, int, int]:
    """Shares bought and sold, fees, money paid in and out, over the orders of the closed dates (deferred
    rests of large redemption days too), each of which must be confirmed once."""
    done = (OrderStatus.CONFIRMED, OrderStatus.FAILED, OrderStatus.PARTIALLY_CONFIRMED)
    bought = sold = fees = paid_in = paid_out = 0
    for order in orders:
        if order.status is OrderStatus.CANCELLED:
            continue
        assert order.status in done and order.confirmation is not None, order
        if order.status is OrderStatus.FAILED:
            continue
        fees += order.confirmation.fee_minor
        if order.kind in (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION):
            sold += order.confirmation.shares
            paid_out += order.confirmation.amount_minor
        else:
            bought += order.confirmation.shares
            paid_in += order.confirmation.amount_minor
    return bought, sold, fees, paid_in, paid_out


def _closed_dates(fund: Fund, tally: Tally) -> list[str]:
    return [day for day in tally.closed if day <= fund.last_closed_date]


def _income_days(fund: Fund, day: datetime.date) -> list[datetime.date]:
    if not fund.last_closed_date:
        return [day]
    last = datetime.date.fromisoformat(fund.last_closed_date)
    return [last + datetime.timedelta(days=d) for d in range(1, (day - last).days + 1)]


async def _rows(backend: StorageBackend, partition: PartitionRef, kind: str) -> list[Row]:
    page = await backend.read_page(
        RowQuery(partition, Bound((kind,), True), Bound((kind,), True), limit=5000)
    )
    assert page.next_after is None
    return list(page.rows)


async def _fund(agency: Agency, manager: Tenant, clock: SetClock, rule: LargeRedemptionRule) -> Fund:
    fund = Fund(
        f"S{uuid.uuid4().hex[:10].upper()}", "", "Simulated", FundKind.MONEY_MARKET, "CNY", FundStatus.OPEN,
        100, 0, (PurchaseFeeTier(0, "0.001", 0),), (RedemptionFeeTier(0, "0.005"), RedemptionFeeTier(3, "0")),
        Calendar("Asia/Shanghai", "15:00", ("2026-12-08",)), 4, 0, 0, 0, 0,
        fast_redemption_cap_minor=5_000_00, large_redemption_rule=rule,
    )  # fmt: skip
    created = await agency.create_fund(manager, fund, _claim(clock))
    assert msgspec.structs.replace(created, manager_id="").fast_redemption_cap_minor == 5_000_00
    assert calendar.is_trade_date(created.calendar, datetime.date(2026, 12, 4))
    return created


def _tenant(kind: TenantKind) -> Tenant:
    return Tenant(f"t{uuid.uuid4().hex[:20]}", "Sim", kind, frozenset({Product.FUND_TA}), Quota(100, 100, 10))


def _claim(clock: SetClock) -> Claim:
    return Claim(fresh=True, claimed_ms=clock.wall_ms())
