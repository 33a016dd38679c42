"""The fund TA end to end on a real server (SQLite): funds, grants, investors, orders, prices; retries;
tenancy in both directions; bad input refused with its reason, changing nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from google.protobuf.field_mask_pb2 import FieldMask
from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Code

from tests.fundta.support import SetClock, money_market, open_investor, purchase, refused

ID_NUMBER = "11010519491231002X"


async def _sell(manager: AsyncClient, *distributors: str, fund: pb.Fund | None = None) -> pb.Fund:
    created = (await manager.funds.CreateFund(pb.CreateFundRequest(fund=fund or money_market()))).fund
    for distributor in distributors:
        await manager.funds.GrantFund(
            pb.GrantFundRequest(fund_code=created.fund_code, distributor_id=distributor)
        )
    return created


async def test_a_fund_is_seen_by_its_manager_and_the_distributors_it_granted(
    manager: AsyncClient, platform: AsyncClient
) -> None:
    fund = (await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))).fund
    assert (fund.manager_id, fund.status, fund.nav_scale, fund.total_shares) == (
        "demo-fund",
        pb.FUND_STATUS_OPEN,
        4,
        "0.00",
    )
    assert (fund.calendar.time_zone, fund.calendar.cut_off) == ("Asia/Shanghai", "15:00")
    await refused(
        platform.funds.GetFund(pb.GetFundRequest(fund_code="000198")), Code.NOT_FOUND, "FUND_NOT_FOUND"
    )
    assert not (await platform.funds.ListFunds(pb.ListFundsRequest())).funds

    grant = (
        await manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-platform"))
    ).grant
    assert grant.distributor_id == "demo-platform"
    assert (await platform.funds.GetFund(pb.GetFundRequest(fund_code="000198"))).fund == fund
    listed = await platform.funds.ListFunds(pb.ListFundsRequest())
    assert [f.fund_code for f in listed.funds] == ["000198"]
    assert [f.fund_code for f in (await manager.funds.ListFunds(pb.ListFundsRequest())).funds] == ["000198"]


async def test_funds_are_paged(manager: AsyncClient) -> None:
    codes = [f"F{i:04d}" for i in range(5)]
    for code in codes:
        await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(code)))
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = await manager.funds.ListFunds(pb.ListFundsRequest(page_size=2, page_token=token))
        seen += [f.fund_code for f in page.funds]
        token = page.next_page_token
        if not token:
            break
    assert seen == codes


async def test_only_a_fund_house_creates_funds_and_codes_are_unique(
    manager: AsyncClient, platform: AsyncClient, other_manager: AsyncClient
) -> None:
    await refused(
        platform.funds.CreateFund(pb.CreateFundRequest(fund=money_market())),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    await refused(
        other_manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market())),
        Code.ALREADY_EXISTS,
        "FUND_EXISTS",
    )
    await refused(
        manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(display_name="Again"))),
        Code.ALREADY_EXISTS,
        "FUND_EXISTS",
    )
    assert not (await other_manager.funds.ListFunds(pb.ListFundsRequest())).funds
    assert (await manager.funds.GetFund(pb.GetFundRequest(fund_code="000198"))).fund.display_name == (
        "Demo Money Market Fund"
    )


async def test_a_bad_fund_is_refused_naming_each_field(manager: AsyncClient) -> None:
    bad = money_market(
        "x1",
        currency_code="XYZ",
        nav_scale=9,
        minimum_holding_shares="1.234",
        purchase_fee_tiers=[pb.PurchaseFeeTier(threshold_minor=5, rate="0.015", fixed_fee_minor=100)],
        redemption_fee_tiers=[pb.RedemptionFeeTier(min_holding_days=0, rate="1.5")],
        calendar=pb.TradingCalendar(time_zone="Mars/Olympus", cut_off="25:00", holidays=["2026-02-30"]),
    )
    error = await refused(
        manager.funds.CreateFund(pb.CreateFundRequest(fund=bad)), Code.INVALID_ARGUMENT, "UNKNOWN_CURRENCY"
    )
    assert {v.field for v in error.field_violations} == {
        "fund.fund_code",
        "fund.currency_code",
        "fund.nav_scale",
        "fund.minimum_holding_shares",
        "fund.purchase_fee_tiers[0].threshold_minor",
        "fund.purchase_fee_tiers[0]",
        "fund.redemption_fee_tiers[0].rate",
        "fund.calendar.time_zone",
        "fund.calendar.cut_off",
        "fund.calendar.holidays[0]",
    }
    assert not (await manager.funds.ListFunds(pb.ListFundsRequest())).funds


async def test_the_fund_account_is_the_same_whichever_distributor_asks(
    manager: AsyncClient, platform: AsyncClient, bank: AsyncClient, tmp_path: Path
) -> None:
    at_platform = await open_investor(platform, "alice", ID_NUMBER)
    at_bank = await open_investor(bank, "6222-0001", ID_NUMBER.lower())
    assert at_platform.fund_account_id == at_bank.fund_account_id
    assert at_platform.fund_account_id.startswith("F") and len(at_platform.fund_account_id) == 21
    assert (at_platform.distributor_id, at_bank.distributor_id) == ("demo-platform", "other-bank")
    someone_else = await open_investor(platform, "bob", "110105194912310038")
    assert someone_else.fund_account_id != at_platform.fund_account_id

    # Opening again is answered with the investor; another identity cannot take the trading account.
    assert await open_investor(platform, "alice", ID_NUMBER) == at_platform
    await refused(
        open_investor(platform, "alice", "110105194912310038"), Code.ALREADY_EXISTS, "INVESTOR_EXISTS"
    )
    # A distributor sees only its own trading accounts.
    await refused(
        bank.trading.GetInvestor(pb.GetInvestorRequest(trading_account_id="alice")),
        Code.NOT_FOUND,
        "INVESTOR_NOT_FOUND",
    )
    # The identity is never stored in clear.
    database = sqlite3.connect(tmp_path / "jubao.db")
    try:
        for (record,) in database.execute("SELECT record FROM fundta_investors"):
            assert ID_NUMBER.encode() not in record.upper()
    finally:
        database.close()


async def test_orders_are_stamped_with_their_trade_date_by_the_calendar(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    calendar = pb.TradingCalendar(holidays=["2026-12-07"])
    await _sell(manager, "demo-platform", fund=money_market(calendar=calendar))
    await open_investor(platform, "alice", ID_NUMBER)
    dates = []
    for local in ("2026-12-04 14:59:59", "2026-12-04 15:00:01", "2026-12-05 11:00:00", "2026-12-08 09:30:00"):
        clock.set_local(local)
        dates.append((await purchase(platform, "000198", "alice", 100)).trade_date)
    # Friday before the cut-off; after it, the weekend and the holiday Monday belong to Tuesday.
    assert dates == ["2026-12-04", "2026-12-08", "2026-12-08", "2026-12-08"]
    listed = await platform.trading.ListOrders(
        pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-08")
    )
    assert len(listed.orders) == 3


async def test_an_order_is_cancelled_before_its_cut_off_only(
    manager: AsyncClient, platform: AsyncClient, clock: SetClock
) -> None:
    await _sell(manager, "demo-platform")
    await open_investor(platform, "alice", ID_NUMBER)
    first = await purchase(platform, "000198", "alice", 100_00)
    second = await purchase(platform, "000198", "alice", 200_00)
    cancel = pb.CancelOrderRequest(order_id=first.order_id, request_id="cancel-1")
    cancelled = (await platform.trading.CancelOrder(cancel)).order
    assert cancelled.status == pb.ORDER_STATUS_CANCELLED
    assert (await platform.trading.CancelOrder(cancel)).order == cancelled
    await refused(
        platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=first.order_id)),
        Code.FAILED_PRECONDITION,
        "INVALID_STATE",
    )
    clock.set_local("2026-12-04 15:00:00")
    await refused(
        platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=second.order_id)),
        Code.FAILED_PRECONDITION,
        "CUTOFF_PASSED",
    )
    order = (await platform.trading.GetOrder(pb.GetOrderRequest(order_id=second.order_id))).order
    assert order.status == pb.ORDER_STATUS_ACCEPTED


async def test_bad_orders_are_refused_and_change_nothing(
    manager: AsyncClient, platform: AsyncClient, bank: AsyncClient
) -> None:
    await _sell(manager, "demo-platform")
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market("000199")))
    await open_investor(platform, "alice", ID_NUMBER)
    await open_investor(bank, "carol", ID_NUMBER)

    def order(**fields: object) -> pb.CreateOrderRequest:
        values: dict[str, object] = {
            "fund_code": "000198",
            "trading_account_id": "alice",
            "kind": pb.ORDER_KIND_PURCHASE,
            "amount_minor": 100,
            **fields,
        }
        return pb.CreateOrderRequest(**values)  # type: ignore[arg-type]

    cases = [
        (platform, order(fund_code="999999"), Code.NOT_FOUND, "FUND_NOT_FOUND"),
        (platform, order(fund_code="000199"), Code.PERMISSION_DENIED, "FUND_NOT_GRANTED"),
        (bank, order(trading_account_id="carol"), Code.PERMISSION_DENIED, "FUND_NOT_GRANTED"),
        (platform, order(trading_account_id="nobody"), Code.NOT_FOUND, "INVESTOR_NOT_FOUND"),
        (platform, order(amount_minor=99), Code.FAILED_PRECONDITION, "BELOW_MINIMUM"),
        (platform, order(kind=pb.ORDER_KIND_SUBSCRIPTION), Code.FAILED_PRECONDITION, "FUND_SUSPENDED"),
        (
            platform,
            order(kind=pb.ORDER_KIND_REDEMPTION, amount_minor=0, shares="0.01"),
            Code.FAILED_PRECONDITION,
            "INSUFFICIENT_SHARES",
        ),
        (platform, order(amount_minor=0), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (
            platform,
            order(kind=pb.ORDER_KIND_REDEMPTION, amount_minor=0, shares="1.001"),
            Code.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ),
        (platform, order(kind=pb.ORDER_KIND_UNSPECIFIED), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
    ]
    for client, request, code, reason in cases:
        await refused(client.trading.CreateOrder(request), code, reason)
    for fund_code in ("000198", "000199"):
        listed = await manager.trading.ListOrders(
            pb.ListOrdersRequest(fund_code=fund_code, trade_date="2026-12-04")
        )
        assert not listed.orders
    holding = await platform.trading.GetHolding(
        pb.GetHoldingRequest(fund_code="000198", trading_account_id="alice")
    )
    assert (holding.holding.shares, holding.holding.available_shares) == ("0.00", "0.00")


async def test_a_retry_gets_the_first_answer_whatever_changed_since(
    manager: AsyncClient, platform: AsyncClient
) -> None:
    await _sell(manager, "demo-platform")
    await open_investor(platform, "alice", ID_NUMBER)
    order = await purchase(platform, "000198", "alice", 500_00, request_id="buy-1")
    assert await purchase(platform, "000198", "alice", 500_00, request_id="buy-1") == order
    await refused(
        purchase(platform, "000198", "alice", 600_00, request_id="buy-1"),
        Code.ALREADY_EXISTS,
        "REQUEST_ID_REUSED",
    )

    # A refusal is an answer too: lowering the minimum does not change what the request got.
    await refused(
        purchase(platform, "000198", "alice", 50, request_id="buy-2"),
        Code.FAILED_PRECONDITION,
        "BELOW_MINIMUM",
    )
    update = pb.UpdateFundRequest(
        fund=pb.Fund(fund_code="000198", minimum_purchase_minor=1),
        update_mask=FieldMask(paths=["minimum_purchase_minor"]),
    )
    assert (await manager.funds.UpdateFund(update)).fund.minimum_purchase_minor == 1
    await refused(
        purchase(platform, "000198", "alice", 50, request_id="buy-2"),
        Code.FAILED_PRECONDITION,
        "BELOW_MINIMUM",
    )
    assert (await purchase(platform, "000198", "alice", 50, request_id="buy-3")).amount_minor == 50
    listed = await platform.trading.ListOrders(
        pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-04")
    )
    assert sorted(o.amount_minor for o in listed.orders) == [50, 500_00]


async def test_the_fund_status_decides_which_orders_it_takes(
    manager: AsyncClient, platform: AsyncClient
) -> None:
    await _sell(manager, "demo-platform", fund=money_market(status=pb.FUND_STATUS_ISSUING))
    await open_investor(platform, "alice", ID_NUMBER)

    def subscription() -> pb.CreateOrderRequest:
        # A fresh request each time: the SDK gives a request without an id one, in place.
        return pb.CreateOrderRequest(
            fund_code="000198",
            trading_account_id="alice",
            kind=pb.ORDER_KIND_SUBSCRIPTION,
            amount_minor=1000_00,
        )

    assert (await platform.trading.CreateOrder(subscription())).order.kind == pb.ORDER_KIND_SUBSCRIPTION
    await refused(purchase(platform, "000198", "alice", 100), Code.FAILED_PRECONDITION, "FUND_SUSPENDED")
    for status in (pb.FUND_STATUS_CLOSED, pb.FUND_STATUS_PURCHASE_SUSPENDED):
        update = pb.UpdateFundRequest(
            fund=pb.Fund(fund_code="000198", status=status), update_mask=FieldMask(paths=["status"])
        )
        await manager.funds.UpdateFund(update)
        await refused(
            platform.trading.CreateOrder(subscription()), Code.FAILED_PRECONDITION, "FUND_SUSPENDED"
        )
    await refused(
        platform.funds.UpdateFund(
            pb.UpdateFundRequest(fund=pb.Fund(fund_code="000198"), update_mask=FieldMask(paths=["status"]))
        ),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


async def test_distributors_see_only_their_own_orders_and_managers_only_their_funds(
    manager: AsyncClient, platform: AsyncClient, bank: AsyncClient, other_manager: AsyncClient
) -> None:
    await _sell(manager, "demo-platform", "other-bank")
    await open_investor(platform, "alice", ID_NUMBER)
    await open_investor(bank, "carol", "110105194912310038")
    mine = await purchase(platform, "000198", "alice", 100_00)
    theirs = await purchase(bank, "000198", "carol", 300_00)

    # A distributor tries the other's ids.
    get_theirs = pb.GetOrderRequest(order_id=theirs.order_id)
    await refused(platform.trading.GetOrder(get_theirs), Code.NOT_FOUND, "ORDER_NOT_FOUND")
    await refused(
        platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=theirs.order_id)),
        Code.NOT_FOUND,
        "ORDER_NOT_FOUND",
    )
    await refused(
        platform.trading.GetHolding(pb.GetHoldingRequest(fund_code="000198", trading_account_id="carol")),
        Code.NOT_FOUND,
        "INVESTOR_NOT_FOUND",
    )
    await refused(
        platform.trading.GetHolding(
            pb.GetHoldingRequest(fund_code="000198", trading_account_id="carol", distributor_id="other-bank")
        ),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )
    query = pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-04")
    assert [o.order_id for o in (await platform.trading.ListOrders(query)).orders] == [mine.order_id]
    assert [o.order_id for o in (await bank.trading.ListOrders(query)).orders] == [theirs.order_id]
    await refused(
        platform.trading.ListOrders(
            pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-04", distributor_id="other-bank")
        ),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )
    await refused(
        platform.funds.PublishPrice(
            pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-03", income_minor=1)
        ),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )
    await refused(
        platform.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-platform")),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )

    # The manager sees every distributor's orders of its fund, or one's.
    assert {o.order_id for o in (await manager.trading.ListOrders(query)).orders} == {
        mine.order_id,
        theirs.order_id,
    }
    only_bank = pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-04", distributor_id="other-bank")
    assert [o.order_id for o in (await manager.trading.ListOrders(only_bank)).orders] == [theirs.order_id]
    assert (await manager.trading.GetOrder(get_theirs)).order == theirs

    # Another manager tries the fund and its orders.
    await refused(
        other_manager.funds.GetFund(pb.GetFundRequest(fund_code="000198")), Code.NOT_FOUND, "FUND_NOT_FOUND"
    )
    await refused(other_manager.trading.GetOrder(get_theirs), Code.NOT_FOUND, "ORDER_NOT_FOUND")
    await refused(other_manager.trading.ListOrders(query), Code.NOT_FOUND, "FUND_NOT_FOUND")
    await refused(
        other_manager.funds.PublishPrice(
            pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-03", income_minor=1)
        ),
        Code.NOT_FOUND,
        "FUND_NOT_FOUND",
    )
    await refused(
        other_manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="other-fund")),
        Code.NOT_FOUND,
        "FUND_NOT_FOUND",
    )
    await refused(
        other_manager.funds.ListPrices(pb.ListPricesRequest(fund_code="000198")),
        Code.NOT_FOUND,
        "FUND_NOT_FOUND",
    )
    # Nothing any of them tried changed the orders.
    assert {o.status for o in (await manager.trading.ListOrders(query)).orders} == {pb.ORDER_STATUS_ACCEPTED}


async def test_orders_are_paged_across_holder_shards(manager: AsyncClient, platform: AsyncClient) -> None:
    await _sell(manager, "demo-platform")
    placed = set()
    for i in range(7):
        await open_investor(platform, f"inv-{i}", f"11010519491231{i:04d}")
        placed.add((await purchase(platform, "000198", f"inv-{i}", 100 + i)).order_id)
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await manager.trading.ListOrders(
            pb.ListOrdersRequest(fund_code="000198", trade_date="2026-12-04", page_size=3, page_token=token)
        )
        seen += [o.order_id for o in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(placed) and set(seen) == placed


async def test_grants_go_to_fund_ta_tenants_only(manager: AsyncClient) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    for distributor in ("demo-bank", "no-such-tenant"):
        await refused(
            manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id=distributor)),
            Code.NOT_FOUND,
            "TENANT_NOT_FOUND",
        )
    await refused(
        manager.funds.GrantFund(pb.GrantFundRequest(fund_code="000198", distributor_id="demo-fund")),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )


async def test_a_money_market_income_is_published_once_per_date(
    manager: AsyncClient, clock: SetClock
) -> None:
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market()))
    clock.set_local("2026-12-10 20:00:00")
    for day in range(1, 8):
        publish = pb.PublishPriceRequest(
            fund_code="000198", price_date=f"2026-12-0{day}", income_minor=1000_00 + day
        )
        price = (await manager.funds.PublishPrice(publish)).price
        # 万份收益 and 七日年化 come with the day-close that distributes the income.
        assert (price.nav, price.income_per_10k_shares, price.seven_day_yield_percent) == ("1.0000", "", "")
    again = pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-03", income_minor=1000_03)
    assert (await manager.funds.PublishPrice(again)).price.income_minor == 1000_03
    other = pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-03", income_minor=999)
    await refused(manager.funds.PublishPrice(other), Code.ALREADY_EXISTS, "PRICE_PUBLISHED")
    # Thursday after the cut-off: the current trade date is Friday, the latest a price may have.
    future = pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-12", income_minor=1)
    await refused(manager.funds.PublishPrice(future), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    nav = pb.PublishPriceRequest(fund_code="000198", price_date="2026-12-08", nav="1.0001")
    await refused(manager.funds.PublishPrice(nav), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")

    listed = await manager.funds.ListPrices(
        pb.ListPricesRequest(fund_code="000198", start_date="2026-12-02", end_date="2026-12-05")
    )
    assert [(p.price_date, p.income_minor) for p in listed.prices] == [
        ("2026-12-02", 1000_02),
        ("2026-12-03", 1000_03),
        ("2026-12-04", 1000_04),
        ("2026-12-05", 1000_05),
    ]
    everything = await manager.funds.ListPrices(pb.ListPricesRequest(fund_code="000198", page_size=4))
    rest = await manager.funds.ListPrices(
        pb.ListPricesRequest(fund_code="000198", page_size=4, page_token=everything.next_page_token)
    )
    assert [p.price_date for p in [*everything.prices, *rest.prices]] == [
        f"2026-12-0{d}" for d in range(1, 8)
    ]
    assert not rest.next_page_token


async def test_a_nav_is_published_for_a_trade_date_at_the_funds_scale(manager: AsyncClient) -> None:
    bond = money_market("000200", kind=pb.FUND_KIND_BOND, nav_scale=4)
    await manager.funds.CreateFund(pb.CreateFundRequest(fund=bond))
    publish = pb.PublishPriceRequest(fund_code="000200", price_date="2026-12-03", nav="1.0234")
    assert (await manager.funds.PublishPrice(publish)).price.nav == "1.0234"
    bad = [
        pb.PublishPriceRequest(fund_code="000200", price_date="2026-12-02", nav="1.02345"),
        pb.PublishPriceRequest(fund_code="000200", price_date="2026-11-29", nav="1.0200"),
        pb.PublishPriceRequest(fund_code="000200", price_date="2026-12-02", income_minor=5),
        pb.PublishPriceRequest(fund_code="000200", price_date="2026-12-02", nav="0"),
        pb.PublishPriceRequest(fund_code="000200", price_date="2026-13-02", nav="1.0"),
    ]
    for request in bad:
        await refused(manager.funds.PublishPrice(request), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    listed = await manager.funds.ListPrices(pb.ListPricesRequest(fund_code="000200"))
    assert [p.price_date for p in listed.prices] == ["2026-12-03"]
