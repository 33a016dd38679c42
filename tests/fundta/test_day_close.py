"""The day-close end to end (SQLite server, the clock set by the test): a money-market fund's orders
confirmed, its income carried forward day by day with the residual kept, the 7-day yield, a redemption
paid out and the settlements the fund house reads in its payments ledger, the order of day-closes, orders
after a seal, and who may run one."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal

from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.payments.v1 import payments_pb2 as payments_pb
from jubao.reasons import Code
from jubao_server.fundta import yields

from tests.fundta.support import SetClock, money_market, open_investor, purchase, refused

POLLS_MAX = 400
POLL_S = 0.025


async def close_day(manager: AsyncClient, code: str, day: str) -> pb.DayClose:
    """Start the day-close of `day` and wait (bounded) until it is done."""
    started = (
        await manager.funds.StartDayClose(pb.StartDayCloseRequest(fund_code=code, trade_date=day))
    ).day_close
    assert started.name == f"funds/{code}/dayCloses/{day}"
    for _ in range(POLLS_MAX):
        current = (await manager.funds.GetDayClose(pb.GetDayCloseRequest(name=started.name))).day_close
        if current.done:
            assert current.state == pb.DayClose.STATE_SUCCEEDED and current.phase == pb.DayClose.PHASE_DONE
            return current
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"the day-close of {day} did not end")


async def publish(manager: AsyncClient, code: str, day: str, income_minor: int) -> None:
    request = pb.PublishPriceRequest(fund_code=code, price_date=day, income_minor=income_minor)
    await manager.funds.PublishPrice(request)


async def holding(client: AsyncClient, code: str, account: str) -> pb.Holding:
    request = pb.GetHoldingRequest(fund_code=code, trading_account_id=account)
    return (await client.trading.GetHolding(request)).holding


async def test_a_money_market_fund_confirms_orders_and_carries_income_forward(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    await manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-platform"))
    await open_investor(platform, "alice", "11010519491231002X")
    await open_investor(platform, "bob", "110105194912310038")
    one_yuan = await purchase(platform, "000198", "alice", 100)
    await purchase(platform, "000198", "bob", 999_900)
    await publish(manager, "000198", "2026-12-04", 5)

    # Friday: 10,000.00 shares confirmed at 1.0000; the day's 5 fen had no shares to go to.
    clock.set_local("2026-12-04 16:00:00")
    friday = await close_day(manager, "000198", "2026-12-04")
    assert (friday.result.orders_confirmed, friday.result.total_shares, friday.result.holders) == (
        2,
        "10000.00",
        2,
    )
    assert (friday.result.income_minor, friday.result.residual_minor) == (5, 5)
    [totals] = friday.result.distributors
    assert (totals.distributor_id, totals.purchase_amount_minor, totals.purchase_fee_minor) == (
        "demo-platform",
        1_000_000,
        0,
    )
    confirmed = (await platform.trading.GetOrder(pb.GetOrderRequest(order_id=one_yuan.order_id))).order
    assert confirmed.status == pb.ORDER_STATUS_CONFIRMED
    assert (confirmed.confirmation.shares, confirmed.confirmation.return_code) == ("1.00", "0000")
    alice = await holding(platform, "000198", "alice")
    assert (alice.shares, alice.available_shares, alice.as_of_date) == ("1.00", "1.00", "2026-12-04")
    assert [(lot.trade_date, lot.shares) for lot in alice.lots] == [("2026-12-04", "1.00")]
    # Starting it again answers the same day-close.
    again = (
        await manager.funds.StartDayClose(
            pb.StartDayCloseRequest(fund_code="000198", trade_date="2026-12-04")
        )
    ).day_close
    assert again.result == friday.result

    # Monday's day-close distributes Saturday's, Sunday's and Monday's income, 1.00 yuan each:
    # Saturday: 万份收益 = 100 x 10^8 / 1,000,000 = 1.0000; bob's 9,999.00 shares get 99.99 -> 99 fen, alice's
    # 1.00 share 0.01 -> 0; 1 fen residual. Sunday over 10,000.99 shares: 0.9999; bob (9,999.99) 99.989 ->
    # 99. Monday over 10,001.98: 0.9998; bob (10,000.98) 99.99 -> 99. Bob redeems 500.00 shares on Monday.
    clock.set_local("2026-12-07 09:30:00")
    redemption = pb.CreateOrderRequest(
        fund_code="000198", trading_account_id="bob", kind=pb.ORDER_KIND_REDEMPTION, shares="500.00"
    )
    await platform.trading.CreateOrder(redemption)
    assert (await holding(platform, "000198", "bob")).available_shares == "9499.00"
    for day in ("2026-12-05", "2026-12-06", "2026-12-07"):
        await publish(manager, "000198", day, 100)
    monday = await close_day(manager, "000198", "2026-12-07")
    assert (monday.result.income_minor, monday.result.residual_minor) == (300, 3)
    bob = await holding(platform, "000198", "bob")
    assert (bob.shares, bob.last_income_minor, bob.income_total_minor) == ("9501.97", 297, 297)
    # 9,999.00 + 2.97 of income - 500.00. The income lot is the oldest, and the redemption took it first:
    # 2.97 shares of income, then 497.03 of the shares bought on Friday.
    assert [(lot.trade_date, lot.shares) for lot in bob.lots] == [("2026-12-04", "9501.97")]
    [totals] = monday.result.distributors
    assert (totals.redemption_amount_minor, totals.redemption_fee_minor) == (50_000, 0)
    assert monday.result.total_shares == "9502.97"
    prices = (await manager.funds.ListPrices(pb.ListPricesRequest(fund_code="000198"))).prices
    assert [(p.price_date, p.income_per_10k_shares, p.residual_minor) for p in prices] == [
        ("2026-12-04", "0.0000", 5),
        ("2026-12-05", "1.0000", 1),
        ("2026-12-06", "0.9999", 1),
        ("2026-12-07", "0.9998", 1),
    ]
    fund = (await manager.funds.GetFund(pb.GetFundRequest(fund_code="000198"))).fund
    assert (fund.last_closed_date, fund.next_close_date, fund.total_shares) == (
        "2026-12-07",
        "2026-12-08",
        "9502.97",
    )
    # The fund house reads the settlements in its payments ledger: the platform paid custody Friday's
    # purchases, custody paid the platform Monday's redemption; no fees.
    accounts = (await manager.payments.ListAccounts(payments_pb.ListAccountsRequest())).accounts
    assert {a.account_id: a.balance.ledger_minor for a in accounts} == {
        "ta.000198.custody": 950_000,
        "ta.000198.demo-platform": -950_000,
        "ta.000198.fees": 0,
    }


async def test_day_closes_run_in_order_with_their_prices(
    manager: AsyncClient, platform: AsyncClient, other_manager: AsyncClient, clock: SetClock
) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    clock.set_local("2026-12-07 16:00:00")

    def start(day: str) -> pb.StartDayCloseRequest:
        return pb.StartDayCloseRequest(fund_code="000198", trade_date=day)

    await refused(manager.funds.StartDayClose(start("2026-12-07")), Code.FAILED_PRECONDITION, "CLOSE_ORDER")
    await refused(manager.funds.StartDayClose(start("2026-12-04")), Code.FAILED_PRECONDITION, "PRICE_MISSING")
    await refused(platform.funds.StartDayClose(start("2026-12-04")), Code.NOT_FOUND, "FUND_NOT_FOUND")
    await refused(other_manager.funds.StartDayClose(start("2026-12-04")), Code.NOT_FOUND, "FUND_NOT_FOUND")
    await refused(
        manager.funds.GetDayClose(pb.GetDayCloseRequest(name="funds/000198/dayCloses/2026-12-04")),
        Code.NOT_FOUND,
        "DAY_CLOSE_NOT_FOUND",
    )
    await refused(
        manager.funds.GetDayClose(pb.GetDayCloseRequest(name="funds/000198/2026-12-04")),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    await publish(manager, "000198", "2026-12-04", 0)
    await close_day(manager, "000198", "2026-12-04")
    await publish(manager, "000198", "2026-12-05", 0)
    await refused(manager.funds.StartDayClose(start("2026-12-07")), Code.FAILED_PRECONDITION, "PRICE_MISSING")
    await refused(manager.funds.StartDayClose(start("2026-12-08")), Code.FAILED_PRECONDITION, "CLOSE_ORDER")


async def test_a_trade_date_closed_early_sends_later_orders_to_the_next_one(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    await manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-platform"))
    await open_investor(platform, "alice", "11010519491231002X")
    early = await purchase(platform, "000198", "alice", 100_00)
    await publish(manager, "000198", "2026-12-04", 0)
    # Friday 10:00, before the cut-off: the day-close seals Friday, so what comes after belongs to Monday.
    await close_day(manager, "000198", "2026-12-04")
    late = await purchase(platform, "000198", "alice", 200_00)
    assert (early.trade_date, late.trade_date) == ("2026-12-04", "2026-12-07")
    await refused(
        platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=early.order_id)),
        Code.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    cancelled = (await platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=late.order_id))).order
    assert cancelled.status == pb.ORDER_STATUS_CANCELLED


async def test_the_7_day_yield_over_a_week_with_a_holiday(manager: AsyncClient, clock: SetClock) -> None:
    # Tuesday 8 December a holiday: the day-closes are Friday 4 (its own date), Monday 7 (5 to 7),
    # Wednesday 9 (8 and 9) and Thursday 10. A fund with 1,000,000.00 shares (a subscription) earns
    # 50.00 yuan a day: 万份收益 0.5000 on the first day, a little less each day after as income is
    # carried forward.
    fund = money_market(status=pb.FUND_STATUS_OPEN, calendar=pb.TradingCalendar(holidays=["2026-12-08"]))
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=fund))
    await open_investor(manager, "house", "91110000100000000X")
    await purchase(manager, "000198", "house", 1_000_000_00)
    await publish(manager, "000198", "2026-12-04", 0)
    clock.set_local("2026-12-04 16:00:00")
    await close_day(manager, "000198", "2026-12-04")
    for close_on, dates in (("2026-12-07", (5, 6, 7)), ("2026-12-09", (8, 9)), ("2026-12-10", (10, 11))):
        clock.set_local(f"{close_on} 16:00:00")
        for day in dates:
            if day <= int(close_on[-2:]):
                await publish(manager, "000198", f"2026-12-{day:02d}", 50_00)
        await close_day(manager, "000198", close_on)
    prices = (
        await manager.funds.ListPrices(pb.ListPricesRequest(fund_code="000198", start_date="2026-12-05"))
    ).prices
    per_10k = [Decimal(p.income_per_10k_shares) for p in prices]
    assert per_10k[0] == Decimal("0.5000") and all(a >= b for a, b in itertools.pairwise(per_10k))
    assert [p.seven_day_yield_percent for p in prices[:-1]] == ["", "", "", "", ""]
    assert prices[-1].price_date == "2026-12-10"
    week = [Decimal("0.0000"), *per_10k]
    assert prices[-1].seven_day_yield_percent == str(yields.seven_day_yield(week))
    holding_after = (
        await manager.trading.GetHolding(
            pb.GetHoldingRequest(fund_code="000198", trading_account_id="house", distributor_id="demo-fund")
        )
    ).holding
    assert holding_after.income_total_minor == sum(50_00 - p.residual_minor for p in prices)


async def test_a_large_redemption_day_of_a_pro_rata_fund_defers_the_rest(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    bond = money_market(
        "000200", kind=pb.FUND_KIND_BOND, large_redemption_rule=pb.LARGE_REDEMPTION_RULE_PRO_RATA
    )
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=bond))
    await manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000200", distributor_id="demo-platform"))
    await open_investor(platform, "alice", "11010519491231002X")
    await open_investor(platform, "bob", "110105194912310038")
    await purchase(platform, "000200", "alice", 1000_00)
    await purchase(platform, "000200", "bob", 1000_00)
    clock.set_local("2026-12-04 16:00:00")
    await nav(manager, "2026-12-04")
    await close_day(manager, "000200", "2026-12-04")

    # Monday: alice redeems 300.00 of the 2,000.00 shares: past 10 %, so each redemption gets
    # 200 / 300 = 0.6666666666 of its shares: 199.99; the other 100.01 move to Tuesday.
    clock.set_local("2026-12-07 10:00:00")
    redemption = pb.CreateOrderRequest(
        fund_code="000200", trading_account_id="alice", kind=pb.ORDER_KIND_REDEMPTION, shares="300.00"
    )
    placed = (await platform.trading.CreateOrder(redemption)).order
    assert placed.large_redemption == pb.LARGE_REDEMPTION_CHOICE_DEFER
    clock.set_local("2026-12-07 16:00:00")
    await nav(manager, "2026-12-07")
    monday = await close_day(manager, "000200", "2026-12-07")
    assert (monday.result.redemption_ratio, monday.result.orders_prorated) == ("0.6666666666", 1)
    cut = (await platform.trading.GetOrder(pb.GetOrderRequest(order_id=placed.order_id))).order
    assert cut.status == pb.ORDER_STATUS_PARTIALLY_CONFIRMED
    assert (cut.confirmation.shares, cut.confirmation.deferred_shares) == ("199.99", "100.01")
    tuesday = pb.ListOrdersRequest(fund_code="000200", trade_date="2026-12-08")
    [deferred] = (await platform.trading.ListOrders(tuesday)).orders
    assert (deferred.shares, deferred.deferred_from_order_id, deferred.status) == (
        "100.01",
        placed.order_id,
        pb.ORDER_STATUS_ACCEPTED,
    )
    assert (await holding(platform, "000200", "alice")).available_shares == "700.00"
    # Tuesday: 100.01 of 1,800.01 is under 10 %: confirmed whole.
    clock.set_local("2026-12-08 16:00:00")
    await nav(manager, "2026-12-08")
    await close_day(manager, "000200", "2026-12-08")
    done = (await platform.trading.GetOrder(pb.GetOrderRequest(order_id=deferred.order_id))).order
    assert (done.status, done.confirmation.shares) == (pb.ORDER_STATUS_CONFIRMED, "100.01")
    alice = await holding(platform, "000200", "alice")
    assert (alice.shares, alice.available_shares) == ("700.00", "700.00")


async def nav(manager: AsyncClient, day: str) -> None:
    await manager.funds.PublishPrice(pb.PublishPriceRequest(fund_code="000200", price_date=day, nav="1.0000"))
