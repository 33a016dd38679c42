"""Worked examples of the day-close's arithmetic (`fundta/close.py`), each figure computed by hand in the
comments: fees by tier, share truncation and its remainder, FIFO redemption fees by holding days, the
minimum holding, refusals, and the money-market income with its rounding residual."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pyarrow as pa
from jubao_server.fundta import close, segments
from jubao_server.fundta.model import (
    Calendar,
    Fund,
    FundKind,
    FundStatus,
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

PRICING = close.Pricing(Decimal("1.0234"), 4, 2)
TIERS = (
    PurchaseFeeTier(0, "0.015", 0),  # 1.5 % below 1 million yuan
    PurchaseFeeTier(1_000_000_00, "0.012", 0),  # 1.2 % from 1 million
    PurchaseFeeTier(5_000_000_00, "", 1000_00),  # 1,000 yuan from 5 million
)
REDEMPTION_TIERS = (
    RedemptionFeeTier(0, "0.015"),  # 1.5 % under 7 days
    RedemptionFeeTier(7, "0.005"),  # 0.5 % under a year
    RedemptionFeeTier(365, "0"),
)


def _fund(**changes: object) -> Fund:
    fund = Fund(
        "000200", "m", "Bond", FundKind.BOND, "CNY", FundStatus.OPEN, 100, 100_00, TIERS, REDEMPTION_TIERS,
        Calendar("Asia/Shanghai", "15:00", ()), 4, 4, 0, 0, 0,
    )  # fmt: skip
    return Fund(**{**{f: getattr(fund, f) for f in fund.__struct_fields__}, **changes})


def _order(order_id: str, kind: OrderKind, amount_minor: int = 0, shares: int = 0) -> Order:
    return Order(
        order_id, "000200", "d", "alice", "F1", kind, OrderStatus.ACCEPTED, "2026-12-04",
        amount_minor, shares, "CNY", order_id, 0, 0,
    )  # fmt: skip


def _position(*lots: Lot) -> Position:
    return Position("d", "alice", "F1", sum(lot.shares for lot in lots), lots, 0, 0, 0, "2026-12-03")


def test_purchase_fees_by_tier() -> None:
    # 10,000.00 yuan at 1.5 %: net = 1,000,000 / 1.015 = 985,221.67 fen, rounded half up to 985,222; the fee
    # is the rest, 14,778 fen.
    assert close.purchase_fee(TIERS, 1_000_000) == 14_778
    # 2,000,000.00 yuan at 1.2 %: net = 200,000,000 / 1.012 = 197,628,458.498 fen -> 197,628,458; fee
    # 2,371,542 fen.
    assert close.purchase_fee(TIERS, 2_000_000_00) == 2_371_542
    # 6,000,000.00 yuan: the fixed 1,000 yuan.
    assert close.purchase_fee(TIERS, 6_000_000_00) == 1000_00
    assert close.purchase_fee((), 1_000_000) == 0


def test_a_purchase_truncates_its_shares_and_the_fund_keeps_the_remainder() -> None:
    fund = _fund()
    before = _position(Lot("2026-11-20", 1000_00))
    after, [order] = close.confirm(
        fund, PRICING, "2026-12-04", before, [_order("b1", OrderKind.PURCHASE, 1_000_000)]
    )
    confirmation = order.confirmation
    assert confirmation is not None and order.status is OrderStatus.CONFIRMED
    # Net 9,852.22 yuan at NAV 1.0234: 9,626.9494... shares, truncated to 9,626.94; they cost
    # 9,626.94 x 1.0234 = 9,852.210396 yuan, so 0.009604 yuan = 0.9604 fen stays with the fund.
    assert (confirmation.shares, confirmation.fee_minor, confirmation.remainder_minor) == (
        962_694,
        14_778,
        "0.9604",
    )
    assert (confirmation.amount_minor, confirmation.nav, confirmation.return_code) == (
        1_000_000,
        "1.0234",
        "0000",
    )
    assert after.shares == 1000_00 + 962_694
    assert after.lots == (Lot("2026-11-20", 1000_00), Lot("2026-12-04", 962_694))


def test_a_redemption_takes_lots_first_in_first_out_with_fees_by_holding_days() -> None:
    fund = _fund()
    pricing = close.Pricing(Decimal("1.0500"), 4, 2)
    before = _position(Lot("2026-11-20", 1000_00), Lot("2026-12-01", 500_00))
    after, [order] = close.confirm(
        fund, pricing, "2026-12-04", before, [_order("r1", OrderKind.REDEMPTION, shares=1200_00)]
    )
    confirmation = order.confirmation
    assert confirmation is not None
    # The lot of 20 November, held 14 days: 1,000 x 1.05 x 0.5 % = 5.25 yuan. 200 of the lot of
    # 1 December, held 3 days: 200 x 1.05 x 1.5 % = 3.15 yuan. Gross 1,200 x 1.05 = 1,260.00 yuan;
    # paid out 1,260.00 - 8.40 = 1,251.60 yuan.
    assert (confirmation.fee_minor, confirmation.amount_minor, confirmation.shares) == (840, 125_160, 1200_00)
    assert after.shares == 300_00 and after.lots == (Lot("2026-12-01", 300_00),)
    assert after.released_shares == 1200_00 and after.closed_date == "2026-12-04"


def test_a_redemption_leaving_less_than_the_minimum_takes_the_whole_holding() -> None:
    fund = _fund()
    pricing = close.Pricing(Decimal("1.0000"), 4, 2)
    before = _position(Lot("2025-01-02", 1500_00))
    # 1,450 of 1,500 would leave 50 < the minimum holding of 100: all 1,500 go, held over a year, no fee.
    after, [order] = close.confirm(
        fund, pricing, "2026-12-04", before, [_order("r1", OrderKind.REDEMPTION, shares=1450_00)]
    )
    assert order.confirmation is not None
    assert (order.confirmation.shares, order.confirmation.amount_minor, order.confirmation.fee_minor) == (
        1500_00,
        1500_00,
        0,
    )
    assert after.shares == 0 and after.lots == ()
    # What the order reserved (1,450) is released, whatever it took.
    assert after.released_shares == 1450_00


def test_refusals_are_confirmed_as_failed_and_change_nothing() -> None:
    before = _position(Lot("2026-11-20", 1500_00))
    orders = [
        _order("r1", OrderKind.REDEMPTION, shares=2000_00),
        _order("b1", OrderKind.PURCHASE, amount_minor=50),
    ]
    after, confirmed = close.confirm(_fund(), PRICING, "2026-12-04", before, orders)
    assert [
        (o.order_id, o.status, o.confirmation.return_code, o.confirmation.reason)
        for o in confirmed
        if o.confirmation
    ] == [
        ("r1", OrderStatus.FAILED, "1003", "INSUFFICIENT_SHARES"),
        ("b1", OrderStatus.FAILED, "1002", "BELOW_MINIMUM"),
    ]
    assert (after.shares, after.lots) == (before.shares, before.lots)
    suspended, [order] = close.confirm(
        _fund(status=FundStatus.PURCHASE_SUSPENDED),
        PRICING,
        "2026-12-04",
        before,
        [_order("b2", OrderKind.PURCHASE, 1000_00)],
    )
    assert order.confirmation is not None and order.confirmation.return_code == "1001"
    assert suspended.shares == before.shares


def test_money_market_income_is_truncated_per_holder_and_the_residual_recorded() -> None:
    # Day 1: 1.00 yuan over 1,000.00 shares: 万份收益 10.0000. The holders of 100.00, 333.33 and 566.67
    # shares get 10, 33.333 -> 33 and 56.667 -> 56 fen: 99 fen, and 1 fen stays with the fund.
    # Day 2: 0.50 yuan over the 1,000.99 shares after day 1: 50 x 10^8 / 100,099 = 49,950.55 -> 万份收益
    # 4.9950; the holders (100.10, 333.66, 567.23 shares) get 4.999995 -> 4, 16.666 -> 16 and 28.333 -> 28
    # fen: 48 fen, residual 2.
    days = close.plan_incomes([100_00, 333_33, 566_67], [("2026-12-05", 100), ("2026-12-06", 50)])
    assert days == (
        IncomeDay("2026-12-05", 100, 10_0000, 1000_00, 99, 1),
        IncomeDay("2026-12-06", 50, 4_9950, 1000_99, 48, 2),
    )
    [carried] = segments.positions_of(
        segments.carry_incomes(segments.table_of([_position(Lot("2026-11-20", 333_33))]), days)
    )
    assert (carried.shares, carried.last_income_minor, carried.lots) == (
        333_33 + 33 + 16,
        49,
        (Lot("", 49), Lot("2026-11-20", 333_33)),
    )
    # The income lot is the oldest: a redemption takes it first.
    nothing = close.plan_incomes([], [("2026-12-05", 100)])
    assert nothing == (IncomeDay("2026-12-05", 100, 0, 0, 0, 100),)


def test_a_holder_s_income_is_exact_in_int64_whatever_its_shares() -> None:
    # shares x 万份收益 passes 2^63 here; the column rule splits the shares at 10^8 and stays exact.
    shares = [10**15, 10**15 - 1, 123_456_789_012, 99_999_999, 1, 0]
    per_10k = 9_999_9999
    column = segments.income_column(pa.array(shares, pa.int64()), per_10k)
    assert column.to_pylist() == [s * per_10k // 10**8 for s in shares]


def test_a_large_redemption_day_confirms_pro_rata_and_defers_or_cancels_the_rest() -> None:
    # 1,000,000.00 shares after the last day-close; the day's redemptions ask for 80,000.00 (deferring the
    # rest) and 60,000.00 (cancelling it), its purchases get 10,000.00: net 130,000.00 > 10 % (100,000.00).
    # Ratio = (100,000 + 10,000) / 140,000 = 0.785714285714..., truncated: 0.7857142857.
    ratio = close.redemption_ratio(1_000_000_00, 140_000_00, 10_000_00)
    assert ratio == Decimal("0.7857142857")
    # At exactly 10 % net it is not a large redemption day.
    assert close.redemption_ratio(1_000_000_00, 110_000_00, 10_000_00) == 1
    pricing = close.Pricing(Decimal("1.0000"), 4, 2, ratio, "2026-12-07")
    fund = _fund(redemption_fee_tiers=())
    deferring = _order("000200-20261204-0001-00000000000000aa", OrderKind.REDEMPTION, shares=80_000_00)
    cancelling = msgspec.structs.replace(
        _order("000200-20261204-0002-00000000000000bb", OrderKind.REDEMPTION, shares=60_000_00),
        large_redemption=LargeRedemptionChoice.CANCEL,
    )
    # 80,000 x 0.7857142857 = 62,857.142856 -> 62,857.14 confirmed, 17,142.86 deferred to Monday.
    after, [partial, rest] = close.confirm(
        fund, pricing, "2026-12-04", _position(Lot("2025-01-02", 100_000_00)), [deferring]
    )
    assert partial.status is OrderStatus.PARTIALLY_CONFIRMED and partial.confirmation is not None
    assert (
        partial.confirmation.shares,
        partial.confirmation.deferred_shares,
        partial.confirmation.amount_minor,
    ) == (
        62_857_14,
        17_142_86,
        6_285_714,
    )
    assert (rest.trade_date, rest.shares, rest.status, rest.deferred_from_order_id) == (
        "2026-12-07",
        17_142_86,
        OrderStatus.ACCEPTED,
        deferring.order_id,
    )
    assert rest.order_id.startswith("000200-20261207-0001-") and rest.confirmation is None
    # The deferred rest stays reserved: only what was confirmed is released.
    assert (after.shares, after.released_shares) == (100_000_00 - 62_857_14, 62_857_14)
    # 60,000 x 0.7857142857 = 47,142.857142 -> 47,142.85 confirmed, 12,857.15 cancelled and released.
    after, [cut] = close.confirm(
        fund, pricing, "2026-12-04", _position(Lot("2025-01-02", 100_000_00)), [cancelling]
    )
    assert cut.confirmation is not None
    assert (cut.confirmation.shares, cut.confirmation.cancelled_shares, after.released_shares) == (
        47_142_85,
        12_857_15,
        60_000_00,
    )
    # Never more than applied: 62,857.14 + 47,142.85 = 109,999.99 of the 110,000.00 the ratio allows.
    assert partial.confirmation.shares + cut.confirmation.shares <= 110_000_00
