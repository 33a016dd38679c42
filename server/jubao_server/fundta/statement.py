"""Investor statements (对账单): a fund account's holdings of one fund over a range of dates.

Positions keep only the present, so a statement is replayed: each holding's orders (the index rows of
`agency.account_kind`, written in each order's batch, and the rests of redemptions that large redemption
days deferred, found through the day-close's plan) and the fund's distributed money-market incomes, in
the order the day-closes applied them (`close.confirm`): for each date, its income carried forward
(shares x 万份收益 / 10,000, truncated), then the orders of that trade date: fast redemptions, redemptions,
purchases, dividend method changes, each by order id. Only what is confirmed counts: the orders and
incomes of closed trade dates, and fast redemptions (confirmed when accepted). The replay up to the last
closed date must give the shares of the holding's position, which is checked.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Final

from jubao_server import limits
from jubao_server.fundta import close, segments, yields
from jubao_server.fundta.agency import (
    CLOSE,
    PRICE,
    Agency,
    account_kind,
    order_kind,
    scan,
    seen_distributor,
)
from jubao_server.fundta.model import (
    DayClose,
    DividendMethod,
    Fund,
    FundKind,
    Order,
    OrderKind,
    Price,
    decode,
    default_dividend_method,
)
from jubao_server.fundta.tables import FUNDS, HOLDERS
from jubao_server.invariants import ensure, unreachable
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import Bound, PartitionRef, Row, RowQuery, StorageBackend
from jubao_server.tenancy.model import Tenant


class EntryKind(StrEnum):
    CONFIRMATION = "confirmation"
    INCOME = "income"
    FAST_REDEMPTION = "fast_redemption"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One change of a holding: an order confirmed (`order`), or a date's income carried forward."""

    date: str
    fund_code: str
    distributor_id: str
    trading_account_id: str
    kind: EntryKind
    order: Order | None
    amount_minor: int
    fee_minor: int
    shares_delta: int
    balance_shares: int


@dataclasses.dataclass(frozen=True)
class HoldingLine:
    fund: Fund
    distributor_id: str
    trading_account_id: str
    opening_shares: int
    closing_shares: int
    dividend_method: DividendMethod


@dataclasses.dataclass(frozen=True)
class Statement:
    # The funds it covers.
    funds: list[Fund]
    holdings: list[HoldingLine]
    # Every entry of the range, holding by holding (as `holdings`), in date order.
    entries: list[Entry]


# Within a trade date, the order the day-close applies its orders in (`close.confirm`).
_RANK: Final = {
    OrderKind.FAST_REDEMPTION: 0,
    OrderKind.REDEMPTION: 1,
    OrderKind.SUBSCRIPTION: 2,
    OrderKind.PURCHASE: 2,
    OrderKind.DIVIDEND_METHOD: 3,
}
_OUT: Final = (OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION)


class Statements:
    def __init__(self, agency: Agency, backend: StorageBackend) -> None:
        self._agency = agency
        self._backend = backend

    async def statement(
        self,
        tenant: Tenant,
        code: str,
        fund_account_id: str,
        *,
        start: str,
        end: str,
        distributor_id: str,
    ) -> Statement:
        """The statement of `fund_account_id` from `start` to `end` (inclusive) in fund `code`, or ("") in
        every fund the caller manages or was granted: every holding the caller sees (a distributor its
        own, the manager every distributor's or, with `distributor_id`, one's; naming another distributor
        than itself, a caller of every fund gets the funds it manages only)."""
        if code:
            funds = [await self._agency.visible_fund(tenant, code)]
        else:
            codes = await self._agency.fund_codes(tenant, limits.fundta_statement_funds_max)
            funds = [await self._agency.visible_fund(tenant, c) for c in codes]
        holdings: list[HoldingLine] = []
        entries: list[Entry] = []
        for fund, managed in funds:
            if not code and not managed and distributor_id not in ("", tenant.tenant_id):
                continue
            wanted = seen_distributor(fund, tenant.tenant_id, managed, distributor_id)
            found = await self._of_fund(fund, wanted, fund_account_id, start, end)
            holdings += found.holdings
            entries += found.entries
        return Statement([fund for fund, _ in funds], holdings, entries)

    async def _of_fund(
        self, fund: Fund, wanted: str | None, fund_account_id: str, start: str, end: str
    ) -> Statement:
        """The part of the statement of one fund (`wanted`: one distributor's holdings, or every one)."""
        partition = HOLDERS.partition(
            fund.manager_id, fund.fund_code, shard_of(fund_account_id, fund.holder_shard_count)
        )
        holders: dict[str, list[Order]] = {}
        async for key in self._index(partition, fund_account_id, wanted):
            distributor, account, trade_date, order_id = key.split("/")
            if trade_date <= end:
                orders = holders.setdefault(f"{distributor}/{account}", [])
                orders += await self._order_and_rests(fund, partition, trade_date, order_id, end)
        first = min((o.trade_date for orders in holders.values() for o in orders), default=end)
        incomes = await self._incomes(fund, first, min(end, fund.last_closed_date))
        lines: list[HoldingLine] = []
        entries: list[Entry] = []
        for holder, orders in sorted(holders.items()):
            replayed = replay(orders, incomes, fund.last_closed_date)
            position = await self._agency.position(partition, holder, fund_account_id)
            if position.closed_date <= fund.last_closed_date:
                closed = _balance(replayed, fund.last_closed_date)
                ensure(closed == position.shares, f"the statement of {holder} does not replay its position")
            distributor, _, account = holder.partition("/")
            lines.append(
                HoldingLine(
                    fund,
                    distributor,
                    account,
                    opening_shares=_balance(replayed, _day_before(start)),
                    closing_shares=_balance(replayed, end),
                    dividend_method=position.dividend_method or default_dividend_method(fund),
                )
            )
            entries += [e for e in replayed if start <= e.date <= end]
        return Statement([fund], lines, entries)

    async def _index(
        self, partition: PartitionRef, fund_account_id: str, distributor_id: str | None
    ) -> AsyncIterator[str]:
        """The keys of the fund account's order index ("<distributor>/<trading account>/<trade
        date>/<order id>"), of one distributor's trading accounts or every one."""
        kind = account_kind(fund_account_id)
        lower, upper = Bound((kind,), True), Bound((kind,), True)
        if distributor_id is not None:
            # "/" sorts just before "0": the keys that start with "<distributor>/".
            lower, upper = (
                Bound((kind, f"{distributor_id}/"), True),
                Bound((kind, f"{distributor_id}0"), False),
            )
        async for row in scan(
            self._backend,
            RowQuery(partition, lower, upper, limit=limits.storage_page_rows_max),
            "an order index",
        ):
            yield row.as_text("row_key")

    async def _order_and_rests(
        self, fund: Fund, partition: PartitionRef, trade_date: str, order_id: str, end: str
    ) -> list[Order]:
        """An order, and the redemptions of later trade dates (up to `end`) that continue what large
        redemption days deferred of it."""
        found: list[Order] = []
        for _ in range(limits.fundta_statement_deferrals_max):
            row = await self._backend.read_row(partition, (order_kind(trade_date), order_id))
            ensure(row is not None, f"the index names a missing order {order_id}")
            order = decode(_present(row)["record"], Order)
            found.append(order)
            done = order.confirmation
            if done is None or not done.deferred_shares:
                return found
            plan = decode(
                _present(
                    await self._backend.read_row(
                        FUNDS.partition(fund.manager_id, fund.fund_code), (CLOSE, trade_date)
                    )
                )["record"],
                DayClose,
            ).plan
            ensure(plan is not None, f"a deferral without the plan of {trade_date}")
            next_date = plan.next_trade_date if plan is not None else ""
            if next_date > end:
                return found
            order_id, trade_date = close.deferred_order_id(order_id, next_date), next_date
        unreachable(f"an order deferred more than {limits.fundta_statement_deferrals_max} times")

    async def _incomes(self, fund: Fund, first: str, last: str) -> dict[str, int]:
        """The 万份收益 (units of 0.0001) of every date from `first` to `last` whose income a day-close
        distributed (money-market funds)."""
        if fund.kind is not FundKind.MONEY_MARKET or first > last:
            return {}
        partition = FUNDS.partition(fund.manager_id, fund.fund_code)
        query = RowQuery(
            partition,
            Bound((PRICE, first), True),
            Bound((PRICE, last), True),
            limit=limits.storage_page_rows_max,
        )
        incomes = {}
        async for row in scan(self._backend, query, "a fund's prices"):
            price = decode(row["record"], Price)
            if price.income_per_10k_shares:
                incomes[price.price_date] = int(
                    Decimal(price.income_per_10k_shares).scaleb(yields.PER_10K_PLACES)
                )
        return incomes


def replay(orders: Sequence[Order], incomes: dict[str, int], last_closed: str) -> list[Entry]:
    """A holding's entries from its first order on, each with its shares after it: per date, the income
    carried forward (from `incomes`, 万份收益 by date), then the orders confirmed of that trade date."""
    if not orders:
        return []
    confirmed: dict[str, list[Order]] = {}
    for order in orders:
        if order.confirmation is not None and (
            order.kind is OrderKind.FAST_REDEMPTION or order.trade_date <= last_closed
        ):
            confirmed.setdefault(order.trade_date, []).append(order)
    holder = orders[0]
    first = min(o.trade_date for o in orders)
    balance = 0
    entries: list[Entry] = []
    for date in sorted({d for d in incomes if d >= first} | set(confirmed)):
        income = segments.income_of(balance, incomes[date]) if date in incomes else 0
        if income:
            balance += income
            entries.append(
                Entry(
                    date,
                    holder.fund_code,
                    holder.distributor_id,
                    holder.trading_account_id,
                    EntryKind.INCOME,
                    None,
                    income,
                    0,
                    income,
                    balance,
                )
            )
        for order in sorted(confirmed.get(date, []), key=lambda o: (_RANK[o.kind], o.order_id)):
            entry = _order_entry(order, balance)
            balance = entry.balance_shares
            entries.append(entry)
    return entries


def _order_entry(order: Order, balance: int) -> Entry:
    """The entry of a confirmed order (a refusal changes no shares) on a holding of `balance` shares."""
    done = order.confirmation
    if done is None:
        unreachable(f"an entry of order {order.order_id}, not confirmed")
    delta = -done.shares if order.kind in _OUT else done.shares
    kind = EntryKind.FAST_REDEMPTION if order.kind is OrderKind.FAST_REDEMPTION else EntryKind.CONFIRMATION
    return Entry(
        order.trade_date,
        order.fund_code,
        order.distributor_id,
        order.trading_account_id,
        kind,
        order,
        done.amount_minor,
        done.fee_minor,
        delta,
        balance + delta,
    )


def _balance(entries: Sequence[Entry], date: str) -> int:
    """The shares after every entry dated up to `date`."""
    balance = 0
    for entry in entries:
        if entry.date > date:
            break
        balance = entry.balance_shares
    return balance


def _day_before(date: str) -> str:
    return (datetime.date.fromisoformat(date) - datetime.timedelta(days=1)).isoformat()


def _present(row: Row | None) -> Row:
    if row is None:
        unreachable("a statement finds no row it was pointed to")
    return row
