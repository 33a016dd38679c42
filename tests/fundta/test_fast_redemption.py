"""Fast redemption (T+0, the Yu'E Bao "withdraw to balance"): confirmed when accepted, the shares leave
the holding at once, at most the fund's cap per investor, distributor and natural day; over the cap it is
refused and changes nothing; the day-close of its trade date registers it and settles it."""

from __future__ import annotations

from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Code

from tests.fundta.support import SetClock, money_market, open_investor, purchase, refused
from tests.fundta.test_day_close import close_day, holding, publish


def fast(account: str, shares: str, code: str = "000198") -> pb.CreateOrderRequest:
    return pb.CreateOrderRequest(
        fund_code=code, trading_account_id=account, kind=pb.ORDER_KIND_FAST_REDEMPTION, shares=shares
    )


async def test_fast_redemptions_within_the_daily_cap(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    await manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-platform"))
    await open_investor(platform, "alice", "11010519491231002X")
    await purchase(platform, "000198", "alice", 2_000_000)
    await publish(manager, "000198", "2026-12-04", 0)
    clock.set_local("2026-12-04 16:00:00")
    await close_day(manager, "000198", "2026-12-04")
    fund = (await manager.funds.GetFund(pb.GetFundRequest(fund_code="000198"))).fund
    assert fund.fast_redemption_cap_minor == 1_000_000  # 10,000 CNY by default

    # Saturday: 6,000.00 at once, then 4,000.01 is over the 10,000.00 of the day, 4,000.00 is not.
    clock.set_local("2026-12-05 10:00:00")
    first = (await platform.trading.CreateOrder(fast("alice", "6000.00"))).order
    assert (first.status, first.trade_date) == (pb.ORDER_STATUS_CONFIRMED, "2026-12-07")
    assert (first.confirmation.amount_minor, first.confirmation.fee_minor, first.confirmation.nav) == (
        600_000,
        0,
        "1.0000",
    )
    after = await holding(platform, "000198", "alice")
    assert (after.shares, after.available_shares) == ("14000.00", "14000.00")
    error = await refused(
        platform.trading.CreateOrder(fast("alice", "4000.01")),
        Code.FAILED_PRECONDITION,
        "FAST_REDEMPTION_LIMIT",
    )
    assert error.metadata["left_minor"] == "400000"
    assert (await holding(platform, "000198", "alice")).shares == "14000.00"
    await platform.trading.CreateOrder(fast("alice", "4000.00"))
    await refused(
        platform.trading.CreateOrder(fast("alice", "0.01")), Code.FAILED_PRECONDITION, "FAST_REDEMPTION_LIMIT"
    )
    # A confirmed order cannot be cancelled.
    await refused(
        platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=first.order_id)),
        Code.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    # Sunday is another natural day.
    clock.set_local("2026-12-06 10:00:00")
    await platform.trading.CreateOrder(fast("alice", "1000.00"))
    await refused(
        platform.trading.CreateOrder(fast("alice", "9000.01")),
        Code.FAILED_PRECONDITION,
        "INSUFFICIENT_SHARES",
    )
    assert (await holding(platform, "000198", "alice")).shares == "9000.00"

    # Monday's day-close registers the 11,000.00 redeemed and settles them.
    clock.set_local("2026-12-07 16:00:00")
    for day in ("2026-12-05", "2026-12-06", "2026-12-07"):
        await publish(manager, "000198", day, 0)
    monday = await close_day(manager, "000198", "2026-12-07")
    [totals] = monday.result.distributors
    assert (totals.redemption_amount_minor, monday.result.orders_confirmed, monday.result.total_shares) == (
        1_100_000,
        3,
        "9000.00",
    )
    registered = await holding(platform, "000198", "alice")
    assert (registered.shares, registered.available_shares, registered.as_of_date) == (
        "9000.00",
        "9000.00",
        "2026-12-07",
    )
    assert [(lot.trade_date, lot.shares) for lot in registered.lots] == [("2026-12-04", "9000.00")]


async def test_fast_redemption_is_for_money_market_funds_with_a_cap(
    manager: AsyncClient, platform: AsyncClient
) -> None:
    bond = money_market("000200", kind=pb.FUND_KIND_BOND)
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=bond))
    await manager.funds.CreateFund(
        pb.CreateFundRequest(fund=money_market("000201", fast_redemption_cap_minor=0))
    )
    for code in ("000200", "000201"):
        await manager.funds.GrantFund(pb.GrantFundRequest(fund_code=code, distributor_id="demo-platform"))
    await open_investor(platform, "alice", "11010519491231002X")
    for code in ("000200", "000201"):
        await refused(
            platform.trading.CreateOrder(fast("alice", "1.00", code)),
            Code.FAILED_PRECONDITION,
            "FAST_REDEMPTION_LIMIT",
        )
    await refused(
        manager.funds.CreateFund(
            pb.CreateFundRequest(
                fund=money_market("000202", kind=pb.FUND_KIND_BOND, fast_redemption_cap_minor=5)
            )
        ),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
