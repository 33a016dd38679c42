"""The fund transfer agency's domain values, as stored (msgspec Structs, JSON in a `record` column).

Shares are integers of hundredths of a share (the register's precision, 0.01); money is integers of the
fund currency's minor unit. Decimal strings appear only at the API's edge (`decimals.py`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

import msgspec


class FundKind(StrEnum):
    MONEY_MARKET = "money_market"
    BOND = "bond"
    EQUITY = "equity"
    INDEX = "index"
    MIXED = "mixed"


class FundStatus(StrEnum):
    ISSUING = "issuing"
    OPEN = "open"
    PURCHASE_SUSPENDED = "purchase_suspended"
    REDEMPTION_SUSPENDED = "redemption_suspended"
    CLOSED = "closed"


class OrderKind(StrEnum):
    SUBSCRIPTION = "subscription"
    PURCHASE = "purchase"
    REDEMPTION = "redemption"
    # T+0 (money-market funds): confirmed when accepted, within the fund's cap per investor and day.
    FAST_REDEMPTION = "fast_redemption"
    # 分红方式变更: the holding's dividend method from its trade date's day-close on.
    DIVIDEND_METHOD = "dividend_method"


class DividendMethod(StrEnum):
    CASH = "cash"
    REINVEST = "reinvest"


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"
    # Set by the day-close of its trade date.
    CONFIRMED = "confirmed"
    FAILED = "failed"
    # A redemption of a large redemption day: part confirmed, the rest deferred or cancelled.
    PARTIALLY_CONFIRMED = "partially_confirmed"


class LargeRedemptionRule(StrEnum):
    """What a fund does when a day's net redemptions pass 10 % of its shares (巨额赎回)."""

    CONFIRM_ALL = "confirm_all"
    PRO_RATA = "pro_rata"


class LargeRedemptionChoice(StrEnum):
    """What happens to the part of a redemption a large redemption day does not confirm."""

    DEFER = "defer"
    CANCEL = "cancel"


# What each status takes.
STATUS_TAKES: dict[FundStatus, frozenset[OrderKind]] = {
    FundStatus.ISSUING: frozenset({OrderKind.SUBSCRIPTION, OrderKind.DIVIDEND_METHOD}),
    FundStatus.OPEN: frozenset(
        {OrderKind.PURCHASE, OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION, OrderKind.DIVIDEND_METHOD}
    ),
    FundStatus.PURCHASE_SUSPENDED: frozenset(
        {OrderKind.REDEMPTION, OrderKind.FAST_REDEMPTION, OrderKind.DIVIDEND_METHOD}
    ),
    FundStatus.REDEMPTION_SUSPENDED: frozenset({OrderKind.PURCHASE, OrderKind.DIVIDEND_METHOD}),
    FundStatus.CLOSED: frozenset(),
}


class PurchaseFeeTier(msgspec.Struct, frozen=True):
    threshold_minor: int
    # A decimal fraction ("0.015"), or "" with a fixed fee.
    rate: str
    fixed_fee_minor: int


class RedemptionFeeTier(msgspec.Struct, frozen=True):
    min_holding_days: int
    rate: str


class Calendar(msgspec.Struct, frozen=True):
    time_zone: str
    # Local "HH:MM".
    cut_off: str
    # Sorted "YYYY-MM-DD".
    holidays: tuple[str, ...]


class Fund(msgspec.Struct, frozen=True):
    fund_code: str
    manager_id: str
    display_name: str
    kind: FundKind
    currency: str
    status: FundStatus
    minimum_purchase_minor: int
    minimum_holding_shares: int
    purchase_fee_tiers: tuple[PurchaseFeeTier, ...]
    redemption_fee_tiers: tuple[RedemptionFeeTier, ...]
    calendar: Calendar
    nav_scale: int
    holder_shard_count: int
    total_shares: int
    create_time_ms: int
    update_time_ms: int
    # The last trade date a day-close closed ("" before the first).
    last_closed_date: str = ""
    # Money-market funds: the most one investor may redeem fast through one distributor in one natural day
    # (0: no fast redemption).
    fast_redemption_cap_minor: int = 0
    large_redemption_rule: LargeRedemptionRule = LargeRedemptionRule.CONFIRM_ALL


class Grant(msgspec.Struct, frozen=True):
    fund_code: str
    distributor_id: str
    create_time_ms: int
    # Set by RevokeGrant (0: in force): a revoked grant takes no new orders.
    revoke_time_ms: int = 0


class Price(msgspec.Struct, frozen=True):
    fund_code: str
    # "YYYY-MM-DD".
    price_date: str
    # Decimal strings: the NAV, 万份收益 and 七日年化 ("" until 7 dates are known).
    nav: str
    income_minor: int
    # Money-market funds, set by the day-close that distributes the income: 万份收益, 七日年化 ("" until 7
    # consecutive dates are distributed), the shares it was distributed over and the rounding residual.
    income_per_10k_shares: str
    seven_day_yield_percent: str
    total_shares: int
    currency: str
    publish_time_ms: int
    residual_minor: int = 0


class Investor(msgspec.Struct, frozen=True):
    trading_account_id: str
    fund_account_id: str
    distributor_id: str
    display_name: str
    # The keyed hash of the identity (id type and number): never the identity itself.
    identity_hash: str
    create_time_ms: int


class Confirmation(msgspec.Struct, frozen=True):
    """What the day-close of an order's trade date confirmed (or refused: `return_code` not "0000")."""

    return_code: str
    # Why it failed (a Reason), "" when confirmed.
    reason: str
    nav: str
    # Purchases: the amount paid, fee included. Redemptions: the amount paid out, after fees.
    amount_minor: int
    shares: int
    fee_minor: int
    # Purchases: the value of the share fraction truncated, kept by the fund, in minor units ("0.3700").
    remainder_minor: str
    # A large redemption day: the shares not confirmed, deferred to the next trade date or cancelled.
    deferred_shares: int = 0
    cancelled_shares: int = 0


class Order(msgspec.Struct, frozen=True):
    order_id: str
    fund_code: str
    distributor_id: str
    trading_account_id: str
    fund_account_id: str
    kind: OrderKind
    status: OrderStatus
    trade_date: str
    amount_minor: int
    shares: int
    currency: str
    request_id: str
    create_time_ms: int
    update_time_ms: int
    confirmation: Confirmation | None = None
    large_redemption: LargeRedemptionChoice = LargeRedemptionChoice.DEFER
    # A redemption deferred by a large redemption day names the order it continues.
    deferred_from_order_id: str = ""
    # Dividend method changes: the method asked for.
    dividend_method: DividendMethod | None = None


class Lot(msgspec.Struct, frozen=True):
    trade_date: str
    shares: int


class Position(msgspec.Struct, frozen=True):
    """A holder's registered shares as the last day-close left them (written only by day-closes)."""

    distributor_id: str
    trading_account_id: str
    fund_account_id: str
    shares: int
    # First in, first out; income carried forward is a lot dated "" (the oldest).
    lots: tuple[Lot, ...]
    # Shares of redemptions the day-closes have taken off the reservations so far (see Reservation).
    released_shares: int
    last_income_minor: int
    income_total_minor: int
    closed_date: str
    # Of which fast redemptions.
    fast_released_shares: int = 0
    # The method the last dividend method change confirmed (None: the fund's `default_dividend_method`).
    dividend_method: DividendMethod | None = None


class Reservation(msgspec.Struct, frozen=True):
    """Shares reserved by every redemption accepted so far (written only by orders and cancellations):
    the shares still waiting for their day-close are `reserved_shares - Position.released_shares`."""

    reserved_shares: int
    # Of which fast redemptions (they left the holding when accepted), and the natural day of the last
    # one with what was redeemed fast that day (the fund's cap).
    fast_reserved_shares: int = 0
    fast_day: str = ""
    fast_day_minor: int = 0


class DayCloseState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"


class DayClosePhase(StrEnum):
    SEALING = "sealing"
    PLANNING = "planning"
    COMMITTING = "committing"
    DONE = "done"


class IncomeDay(msgspec.Struct, frozen=True):
    """One natural date's money-market income, as a day-close distributes it."""

    date: str
    income_minor: int
    # 万份收益 in units of 0.0001.
    per_10k: int
    # The shares it was distributed over, what the holders got, and what the fund keeps.
    total_shares: int
    distributed_minor: int
    residual_minor: int


class ClosePlan(msgspec.Struct, frozen=True):
    """What a day-close fixes for the whole fund before any shard commits (kept, so a restart uses it)."""

    nav: str
    incomes: tuple[IncomeDay, ...]
    # The share of each redemption confirmed ("1", or below on a large redemption day of a PRO_RATA fund).
    redemption_ratio: str = "1"
    # The trade date deferred redemptions move to.
    next_trade_date: str = ""


class DistributorTotals(msgspec.Struct, frozen=True):
    distributor_id: str
    purchase_amount_minor: int
    purchase_fee_minor: int
    redemption_amount_minor: int
    redemption_fee_minor: int


class CloseResult(msgspec.Struct, frozen=True):
    holders: int
    orders_confirmed: int
    orders_failed: int
    total_shares: int
    income_minor: int
    residual_minor: int
    distributors: tuple[DistributorTotals, ...]
    redemption_ratio: str = "1"
    orders_prorated: int = 0


class DayClose(msgspec.Struct, frozen=True):
    fund_code: str
    trade_date: str
    state: DayCloseState
    phase: DayClosePhase
    shards_total: int
    shards_committed: int
    create_time_ms: int
    update_time_ms: int
    plan: ClosePlan | None = None
    result: CloseResult | None = None


def default_dividend_method(fund: Fund) -> DividendMethod:
    """A holding's dividend method until it changes it: cash (the rule), but a money-market fund's income
    is carried forward into shares every day."""
    return DividendMethod.REINVEST if fund.kind is FundKind.MONEY_MARKET else DividendMethod.CASH


def encode(record: msgspec.Struct) -> bytes:
    return msgspec.json.encode(record)


S = TypeVar("S", bound=msgspec.Struct)


def decode(data: object, kind: type[S]) -> S:
    if not isinstance(data, bytes):
        raise TypeError(f"a stored {kind.__name__} is not bytes")
    return msgspec.json.decode(data, type=kind)
