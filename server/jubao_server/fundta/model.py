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


class OrderStatus(StrEnum):
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"


# What each status takes.
STATUS_TAKES: dict[FundStatus, frozenset[OrderKind]] = {
    FundStatus.ISSUING: frozenset({OrderKind.SUBSCRIPTION}),
    FundStatus.OPEN: frozenset({OrderKind.PURCHASE, OrderKind.REDEMPTION}),
    FundStatus.PURCHASE_SUSPENDED: frozenset({OrderKind.REDEMPTION}),
    FundStatus.REDEMPTION_SUSPENDED: frozenset({OrderKind.PURCHASE}),
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


class Grant(msgspec.Struct, frozen=True):
    fund_code: str
    distributor_id: str
    create_time_ms: int


class Price(msgspec.Struct, frozen=True):
    fund_code: str
    # "YYYY-MM-DD".
    price_date: str
    # Decimal strings: the NAV, 万份收益 and 七日年化 ("" until 7 dates are known).
    nav: str
    income_minor: int
    income_per_10k_shares: str
    seven_day_yield_percent: str
    total_shares: int
    currency: str
    publish_time_ms: int


class Investor(msgspec.Struct, frozen=True):
    trading_account_id: str
    fund_account_id: str
    distributor_id: str
    display_name: str
    # The keyed hash of the identity (id type and number): never the identity itself.
    identity_hash: str
    create_time_ms: int


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


class Lot(msgspec.Struct, frozen=True):
    trade_date: str
    shares: int


class Holding(msgspec.Struct, frozen=True):
    distributor_id: str
    trading_account_id: str
    fund_account_id: str
    shares: int
    # Shares of redemptions accepted and not yet confirmed.
    pending_redemption_shares: int
    lots: tuple[Lot, ...]

    @property
    def available_shares(self) -> int:
        return self.shares - self.pending_redemption_shares


def encode(record: msgspec.Struct) -> bytes:
    return msgspec.json.encode(record)


S = TypeVar("S", bound=msgspec.Struct)


def decode(data: object, kind: type[S]) -> S:
    if not isinstance(data, bytes):
        raise TypeError(f"a stored {kind.__name__} is not bytes")
    return msgspec.json.decode(data, type=kind)
