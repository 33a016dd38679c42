"""The day-close's arithmetic, pure (no storage): money-market income carried forward, and the
confirmation of one holder's orders of a trade date. Integers for shares (hundredths) and money (minor
units); `Decimal` with explicit rounding for NAVs and rates, never floats.

* income: each holder's income of a date = shares x 万份收益 / 10,000, truncated to the minor unit, and
  carried forward into shares (NAV 1: a minor unit is a hundredth of a share); 万份收益 is truncated (see
  `yields.py`), so the holders never get more than the income, and the rest is the date's residual.
* purchase (and subscription, at par): fee by tier (the last tier whose threshold the amount reaches);
  with a rate, net = amount / (1 + rate) rounded half up to the minor unit and fee = amount - net; with a
  fixed fee, net = amount - fee. Shares = net / NAV truncated to 0.01; the value of the truncated
  fraction stays with the fund (`remainder_minor`).
* redemption: the shares come out of the lots first in, first out; each lot's fee = its shares x NAV x
  the rate of its holding days (natural days since its trade date; income lots count as the oldest),
  rounded half up to the minor unit; amount = shares x NAV rounded half up, less the fees. A redemption
  that would leave less than the fund's minimum holding takes the whole holding.
* refusals (the fund's status, below the minimum, more shares than held) are confirmed as failed with a
  return code; the holding is unchanged.
* a dividend method change (after the purchases) sets the holding's method; no money, no shares.
* fast redemptions (confirmed when accepted) leave the position first, first in first out, after the
  income of the dates distributed.
* a large redemption day of a PRO_RATA fund (`redemption_ratio`): each redemption is confirmed at the
  day's ratio, truncated to 0.01 share, and its rest becomes a redemption of the next trade date (DEFER)
  or is cancelled (CANCEL).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from jubao.reasons import Reason

from jubao_server.fundta import segments
from jubao_server.fundta.decimals import SHARE_PLACES
from jubao_server.fundta.model import (
    STATUS_TAKES,
    Confirmation,
    Fund,
    IncomeDay,
    LargeRedemptionChoice,
    Lot,
    Order,
    OrderKind,
    OrderStatus,
    Position,
    PurchaseFeeTier,
    RedemptionFeeTier,
)
from jubao_server.fundta.yields import PER_10K_PLACES, income_per_10k
from jubao_server.invariants import ensure

RETURN_OK: Final = "0000"
RETURN_CODES: Final = {
    Reason.FUND_SUSPENDED: "1001",
    Reason.BELOW_MINIMUM: "1002",
    Reason.INSUFFICIENT_SHARES: "1003",
}
# Income lots are dated "", older than any trade date.
INCOME_LOT: Final = ""
# A money-market fund's currency has 2 decimal places: a minor unit of income is a hundredth of a share.
MONEY_MARKET_EXPONENT: Final = 2
_PRECISION: Final = 60


def per_10k_units(income_minor: int, total_shares: int) -> int:
    """万份收益 in units of 0.0001 (`yields.income_per_10k` of a money-market fund)."""
    return int(income_per_10k(income_minor, MONEY_MARKET_EXPONENT, total_shares).scaleb(PER_10K_PLACES))


def plan_incomes(shares: pa.Array | Sequence[int], days: Sequence[tuple[str, int]]) -> tuple[IncomeDay, ...]:
    """Each date's 万份收益 over every holder's shares as the dates before it left them, what the holders
    get (`segments.income_column`, the rule each holder's carry-forward uses) and the residual: `days`
    are (date, income) in date order."""
    current = shares if isinstance(shares, pa.Array) else pa.array(shares, pa.int64())
    planned = []
    for date, income_minor in days:
        total = sum_of(current)
        per_10k = per_10k_units(income_minor, total)
        incomes = segments.income_column(current, per_10k)
        distributed = sum_of(incomes)
        ensure(distributed <= income_minor, "holders got more than the income")
        planned.append(IncomeDay(date, income_minor, per_10k, total, distributed, income_minor - distributed))
        current = pc.add_checked(current, incomes)
    return tuple(planned)


def sum_of(column: pa.Array | pa.ChunkedArray) -> int:
    """The sum of an integer column (0 when empty)."""
    total = pc.sum(column).as_py()
    return int(total) if total is not None else 0


@dataclasses.dataclass(frozen=True)
class Pricing:
    """What a trade date's confirmations are priced with, and the share of each redemption confirmed (a
    large redemption day of a PRO_RATA fund) with the trade date its deferred rest moves to."""

    nav: Decimal
    nav_scale: int
    currency_exponent: int
    redemption_ratio: Decimal = Decimal(1)
    next_trade_date: str = ""


# The orders confirmed as purchases.
_BUYING: Final = frozenset({OrderKind.SUBSCRIPTION, OrderKind.PURCHASE})
# A day's net redemptions past this share of the fund's shares are a large redemption day.
LARGE_REDEMPTION_SHARE: Final = Decimal("0.1")
RATIO_PLACES: Final = 10


def redemption_ratio(total_shares: int, redeemed: int, purchased: int) -> Decimal:
    """The share of each redemption a PRO_RATA fund confirms when the day's net redemptions (`redeemed`
    less `purchased`, in shares) pass 10 % of `total_shares` (its shares after the last day-close): enough
    that the net is 10 %, truncated to 10 places; 1 otherwise."""
    if redeemed == 0 or Decimal(redeemed - purchased) <= LARGE_REDEMPTION_SHARE * total_shares:
        return Decimal(1)
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        ratio = (LARGE_REDEMPTION_SHARE * total_shares + purchased) / redeemed
        return ratio.quantize(Decimal(1).scaleb(-RATIO_PLACES), decimal.ROUND_DOWN)


def purchase_shares(fund: Fund, pricing: Pricing, order: Order) -> int:
    """The shares a purchase would be confirmed with (0 if it would be refused)."""
    _, confirmation = _purchase(fund, pricing, order.trade_date, _nobody(order), order)
    return confirmation.shares


def confirm(
    fund: Fund, pricing: Pricing, trade_date: str, position: Position, orders: Sequence[Order]
) -> tuple[Position, list[Order]]:
    """Confirm one holder's accepted orders of `trade_date` (redemptions first, then purchases, each in
    order id order): the position after them and the orders with their confirmations."""
    confirmed = []
    for order in sorted((o for o in orders if o.kind is OrderKind.FAST_REDEMPTION), key=lambda o: o.order_id):
        position = _leave(position, order)
    accepted = [o for o in orders if o.status is OrderStatus.ACCEPTED]
    redemptions = sorted((o for o in accepted if o.kind is OrderKind.REDEMPTION), key=lambda o: o.order_id)
    purchases = sorted((o for o in accepted if o.kind in _BUYING), key=lambda o: o.order_id)
    released = 0
    for order in redemptions:
        position, confirmation = _redeem(fund, pricing, trade_date, position, order)
        confirmed.append(_with(order, confirmation))
        # What a deferred rest keeps reserved is released when its own trade date closes.
        released += order.shares - confirmation.deferred_shares
        if confirmation.deferred_shares:
            confirmed.append(_deferred(order, confirmation.deferred_shares, pricing.next_trade_date))
    for order in purchases:
        position, confirmation = _purchase(fund, pricing, trade_date, position, order)
        confirmed.append(_with(order, confirmation))
    for order in sorted(
        (o for o in accepted if o.kind is OrderKind.DIVIDEND_METHOD), key=lambda o: o.order_id
    ):
        position, confirmation = _change_dividend_method(fund, pricing, position, order)
        confirmed.append(_with(order, confirmation))
    position = msgspec.structs.replace(
        position, released_shares=position.released_shares + released, closed_date=trade_date
    )
    return position, confirmed


def purchase_fee(tiers: Sequence[PurchaseFeeTier], amount_minor: int) -> int:
    """The fee of a purchase of `amount_minor` (fee included in the amount)."""
    tier = next((t for t in reversed(tiers) if t.threshold_minor <= amount_minor), None)
    if tier is None:
        return 0
    if not tier.rate:
        return min(tier.fixed_fee_minor, amount_minor)
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        net = (Decimal(amount_minor) / (1 + Decimal(tier.rate))).quantize(Decimal(1), decimal.ROUND_HALF_UP)
    return amount_minor - int(net)


def redemption_rate(tiers: Sequence[RedemptionFeeTier], holding_days: int) -> Decimal:
    tier = next((t for t in reversed(tiers) if t.min_holding_days <= holding_days), None)
    return Decimal(tier.rate) if tier is not None else Decimal(0)


def _purchase(
    fund: Fund, pricing: Pricing, trade_date: str, position: Position, order: Order
) -> tuple[Position, Confirmation]:
    subscription = order.kind is OrderKind.SUBSCRIPTION
    if not subscription and order.kind not in STATUS_TAKES[fund.status]:
        return position, _failed(Reason.FUND_SUSPENDED, pricing, order.amount_minor)
    if order.amount_minor < fund.minimum_purchase_minor:
        return position, _failed(Reason.BELOW_MINIMUM, pricing, order.amount_minor)
    nav = Decimal(1) if subscription else pricing.nav
    fee = purchase_fee(fund.purchase_fee_tiers, order.amount_minor)
    net = order.amount_minor - fee
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        net_major = Decimal(net).scaleb(-pricing.currency_exponent)
        exact = net_major / nav
        shares = int(
            exact.quantize(Decimal(1).scaleb(-SHARE_PLACES), decimal.ROUND_DOWN).scaleb(SHARE_PLACES)
        )
        kept = (net_major - Decimal(shares).scaleb(-SHARE_PLACES) * nav).scaleb(pricing.currency_exponent)
        places = max(0, pricing.nav_scale + SHARE_PLACES - pricing.currency_exponent)
        remainder = str(kept.quantize(Decimal(1).scaleb(-places)))
    ensure(kept >= 0, "a purchase gave more shares than its net amount buys")
    position = msgspec.structs.replace(
        position, shares=position.shares + shares, lots=_add_lot(position.lots, trade_date, shares)
    )
    return position, Confirmation(
        RETURN_OK, "", _nav_text(nav, pricing), order.amount_minor, shares, fee, remainder
    )


def _redeem(
    fund: Fund, pricing: Pricing, trade_date: str, position: Position, order: Order
) -> tuple[Position, Confirmation]:
    if order.kind not in STATUS_TAKES[fund.status]:
        return position, _failed(Reason.FUND_SUSPENDED, pricing, 0)
    if order.shares > position.shares:
        return position, _failed(Reason.INSUFFICIENT_SHARES, pricing, 0)
    shares = order.shares
    rest = 0
    if pricing.redemption_ratio < 1:
        shares = int(Decimal(order.shares) * pricing.redemption_ratio)
        rest = order.shares - shares
    elif 0 < position.shares - shares < fund.minimum_holding_shares:
        shares = position.shares
    day = datetime.date.fromisoformat(trade_date)
    lots = list(position.lots)
    left = shares
    fee = 0
    with decimal.localcontext() as context:
        context.prec = _PRECISION
        scale = pricing.nav * Decimal(10) ** pricing.currency_exponent / Decimal(10) ** SHARE_PLACES
        while left:
            ensure(bool(lots), "lots hold fewer shares than the position")
            lot = lots[0]
            taken = min(left, lot.shares)
            days = (day - datetime.date.fromisoformat(lot.trade_date)).days if lot.trade_date else 10**6
            rate = redemption_rate(fund.redemption_fee_tiers, days)
            fee += int((Decimal(taken) * scale * rate).quantize(Decimal(1), decimal.ROUND_HALF_UP))
            left -= taken
            lots = lots[1:] if taken == lot.shares else [Lot(lot.trade_date, lot.shares - taken), *lots[1:]]
        gross = int((Decimal(shares) * scale).quantize(Decimal(1), decimal.ROUND_HALF_UP))
    position = msgspec.structs.replace(position, shares=position.shares - shares, lots=tuple(lots))
    deferred = rest if order.large_redemption is LargeRedemptionChoice.DEFER else 0
    confirmation = Confirmation(
        RETURN_OK,
        "",
        _nav_text(pricing.nav, pricing),
        gross - fee,
        shares,
        fee,
        "",
        deferred,
        rest - deferred,
    )
    return position, confirmation


def _change_dividend_method(
    fund: Fund, pricing: Pricing, position: Position, order: Order
) -> tuple[Position, Confirmation]:
    """A dividend method change: the holding's method from now on (no money, no shares)."""
    if order.kind not in STATUS_TAKES[fund.status]:
        return position, _failed(Reason.FUND_SUSPENDED, pricing, 0)
    changed = msgspec.structs.replace(position, dividend_method=order.dividend_method)
    return changed, Confirmation(RETURN_OK, "", _nav_text(pricing.nav, pricing), 0, 0, 0, "")


def _leave(position: Position, order: Order) -> Position:
    """A fast redemption (confirmed when accepted, its shares reserved then) leaves the position: its
    shares come out of the lots first in, first out."""
    ensure(
        order.confirmation is not None and order.shares <= position.shares,
        "a fast redemption over the shares",
    )
    lots = list(position.lots)
    left = order.shares
    while left:
        ensure(bool(lots), "lots hold fewer shares than the position")
        taken = min(left, lots[0].shares)
        left -= taken
        lots = (
            lots[1:]
            if taken == lots[0].shares
            else [Lot(lots[0].trade_date, lots[0].shares - taken), *lots[1:]]
        )
    return msgspec.structs.replace(
        position,
        shares=position.shares - order.shares,
        lots=tuple(lots),
        released_shares=position.released_shares + order.shares,
        fast_released_shares=position.fast_released_shares + order.shares,
    )


def _failed(reason: Reason, pricing: Pricing, amount_minor: int) -> Confirmation:
    return Confirmation(
        RETURN_CODES[reason], reason.value, _nav_text(pricing.nav, pricing), amount_minor, 0, 0, ""
    )


def _with(order: Order, confirmation: Confirmation) -> Order:
    status = OrderStatus.CONFIRMED if confirmation.return_code == RETURN_OK else OrderStatus.FAILED
    if confirmation.deferred_shares or confirmation.cancelled_shares:
        status = OrderStatus.PARTIALLY_CONFIRMED
    return msgspec.structs.replace(order, status=status, confirmation=confirmation)


def deferred_order_id(order_id: str, trade_date: str) -> str:
    """The id of the redemption of `trade_date` that continues the deferred rest of `order_id`."""
    code, _, shard, _ = order_id.split("-")
    suffix = hashlib.sha256(order_id.encode()).hexdigest()[:16]
    return f"{code}-{trade_date.replace('-', '')}-{shard}-{suffix}"


def _deferred(order: Order, shares: int, trade_date: str) -> Order:
    """The rest of a redemption a large redemption day deferred: a redemption of the next trade date, its
    id derived from the order it continues (so a day-close run again makes the same one)."""
    return msgspec.structs.replace(
        order,
        order_id=deferred_order_id(order.order_id, trade_date),
        status=OrderStatus.ACCEPTED,
        trade_date=trade_date,
        shares=shares,
        request_id="",
        confirmation=None,
        deferred_from_order_id=order.order_id,
    )


def _nobody(order: Order) -> Position:
    return Position(order.distributor_id, order.trading_account_id, order.fund_account_id, 0, (), 0, 0, 0, "")


def _nav_text(nav: Decimal, pricing: Pricing) -> str:
    return str(nav.quantize(Decimal(1).scaleb(-pricing.nav_scale)))


def _add_lot(lots: tuple[Lot, ...], trade_date: str, shares: int) -> tuple[Lot, ...]:
    """`lots` with `shares` more of `trade_date`, kept in date order (income lots first)."""
    if shares == 0:
        return lots
    merged = [
        Lot(lot.trade_date, lot.shares + shares) if lot.trade_date == trade_date else lot for lot in lots
    ]
    if all(lot.trade_date != trade_date for lot in lots):
        merged.append(Lot(trade_date, shares))
    return tuple(sorted(merged, key=lambda lot: lot.trade_date))
