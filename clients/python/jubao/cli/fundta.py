"""`jubao fundta ...`: the fund transfer agency (FundService, TradingService).

A fund house creates funds, grants distributors and publishes prices; a distributor opens investors and
places orders. Amounts are integers in the fund currency's minor unit (fen for CNY); shares are decimals
with 2 places.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Final

import typer
from google.protobuf.field_mask_pb2 import FieldMask

from jubao.cli.common import (
    PAGE_SIZE,
    RequestIdOption,
    connect,
    emit,
    enum_label,
    list_all,
    list_table,
    record_table,
    time_label,
)
from jubao.fundta.v1 import fundta_pb2 as pb

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table


# `jubao fundta close`: how long it waits for the day-close to end.
CLOSE_POLLS_MAX: Final = 1200
CLOSE_POLL_S: Final = 0.25

app = typer.Typer(
    help="Fund transfer agency: funds, prices, investors and orders (fund_ta product).", no_args_is_help=True
)
funds_app = typer.Typer(help="Create, show, list and grant funds (fund houses).", no_args_is_help=True)
prices_app = typer.Typer(
    help="Publish and list a fund's prices (NAV or money-market income).", no_args_is_help=True
)
investors_app = typer.Typer(help="Open and show investors (distributors).", no_args_is_help=True)
orders_app = typer.Typer(help="Show and list orders.", no_args_is_help=True)
app.add_typer(funds_app, name="funds")
app.add_typer(prices_app, name="prices")
app.add_typer(investors_app, name="investors")
app.add_typer(orders_app, name="orders")


class Kind(StrEnum):
    MONEY_MARKET = "money_market"
    BOND = "bond"
    EQUITY = "equity"
    INDEX = "index"
    MIXED = "mixed"


class Status(StrEnum):
    ISSUING = "issuing"
    OPEN = "open"
    PURCHASE_SUSPENDED = "purchase_suspended"
    REDEMPTION_SUSPENDED = "redemption_suspended"
    CLOSED = "closed"


class IdType(StrEnum):
    ID_CARD = "id_card"
    PASSPORT = "passport"
    BUSINESS_LICENSE = "business_license"


FundArgument = Annotated[str, typer.Argument(metavar="FUND", help="Fund code, e.g. 000198.")]
AccountArgument = Annotated[
    str, typer.Argument(metavar="ACCOUNT", help="Trading account id (your investor).")
]
OrderArgument = Annotated[str, typer.Argument(metavar="ORDER", help="Order id (application number).")]
DistributorOption = Annotated[
    str, typer.Option("--distributor", help="Fund houses: the distributor whose investors or orders to show.")
]


# Funds


@funds_app.command("create")
def create_fund(
    ctx: typer.Context,
    fund_code: FundArgument,
    *,
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    kind: Annotated[Kind, typer.Option("--kind", help="What the fund invests in.")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code, e.g. CNY.")] = "CNY",
    status: Annotated[
        Status, typer.Option("--status", help="Issuing takes subscriptions only.")
    ] = Status.ISSUING,
    minimum_purchase: Annotated[int, typer.Option("--minimum-purchase", min=1, help="Minor units.")] = 100,
    holidays: Annotated[list[str] | None, typer.Option("--holiday", help="YYYY-MM-DD; repeat.")] = None,
    request_id: RequestIdOption = "",
) -> None:
    """Create a fund (the default calendar: Asia/Shanghai, cut-off 15:00, weekends closed)."""
    fund = pb.Fund(
        fund_code=fund_code,
        display_name=name,
        kind=pb.FundKind.Value(f"FUND_KIND_{kind.value.upper()}"),
        currency_code=currency.upper(),
        status=_status(status),
        minimum_purchase_minor=minimum_purchase,
        calendar=pb.TradingCalendar(holidays=holidays or []),
    )
    with connect(ctx) as client:
        response = client.funds.CreateFund(pb.CreateFundRequest(fund=fund, request_id=request_id))
    emit(ctx, response, lambda: fund_record(response.fund))


@funds_app.command("get")
def get_fund(ctx: typer.Context, fund_code: FundArgument) -> None:
    """Show a fund."""
    with connect(ctx) as client:
        response = client.funds.GetFund(pb.GetFundRequest(fund_code=fund_code))
    emit(ctx, response, lambda: fund_record(response.fund))


@funds_app.command("list")
def list_funds(ctx: typer.Context) -> None:
    """List the funds you manage or were granted."""
    with connect(ctx) as client:
        funds = list_all(client.funds.ListFunds, pb.ListFundsRequest(page_size=PAGE_SIZE), lambda r: r.funds)
    rows = [
        (
            f.fund_code,
            f.display_name,
            enum_label(pb.FundKind.Name(f.kind), "FUND_KIND_"),
            _status_label(f),
            f.manager_id,
        )
        for f in funds
    ]
    emit(
        ctx,
        pb.ListFundsResponse(funds=funds),
        lambda: list_table(("fund", "name", "kind", "status", "manager"), rows, wrap=(1,)),
    )


@funds_app.command("set-status")
def set_status(
    ctx: typer.Context, fund_code: FundArgument, status: Status, request_id: RequestIdOption = ""
) -> None:
    """Change a fund's status (open, purchase_suspended, ...)."""
    request = pb.UpdateFundRequest(
        fund=pb.Fund(fund_code=fund_code, status=_status(status)),
        update_mask=FieldMask(paths=["status"]),
        request_id=request_id,
    )
    with connect(ctx) as client:
        response = client.funds.UpdateFund(request)
    emit(ctx, response, lambda: fund_record(response.fund))


@funds_app.command("grant")
def grant(
    ctx: typer.Context, fund_code: FundArgument, distributor_id: str, request_id: RequestIdOption = ""
) -> None:
    """Let a distributor (a tenant with fund_ta) sell the fund."""
    _change_grant(ctx, fund_code, distributor_id, request_id, revoke=False)


@funds_app.command("revoke")
def revoke_grant(
    ctx: typer.Context, fund_code: FundArgument, distributor_id: str, request_id: RequestIdOption = ""
) -> None:
    """End a distributor's grant: its new orders are refused; what it placed is still confirmed."""
    _change_grant(ctx, fund_code, distributor_id, request_id, revoke=True)


def _change_grant(
    ctx: typer.Context, fund_code: str, distributor_id: str, request_id: str, *, revoke: bool
) -> None:
    """GrantFund or RevokeGrant (the same fields asked, a grant answered), its grant shown."""
    fields = {"fund_code": fund_code, "distributor_id": distributor_id, "request_id": request_id}
    with connect(ctx) as client:
        response = (
            client.funds.RevokeGrant(pb.RevokeGrantRequest(**fields))
            if revoke
            else client.funds.GrantFund(pb.GrantFundRequest(**fields))
        )
    emit(ctx, response, lambda: grants_table([response.grant]))


@funds_app.command("grants")
def list_grants(
    ctx: typer.Context,
    fund_code: Annotated[str, typer.Argument(metavar="[FUND]", help="One fund's grants only.")] = "",
) -> None:
    """The grants of your funds (fund houses), or those you were given (distributors)."""
    query = pb.ListGrantsRequest(fund_code=fund_code, page_size=PAGE_SIZE)
    with connect(ctx) as client:
        grants = list_all(client.funds.ListGrants, query, lambda r: r.grants)
    emit(ctx, pb.ListGrantsResponse(grants=grants), lambda: grants_table(grants))


# Prices


@prices_app.command("publish")
def publish_price(
    ctx: typer.Context,
    fund_code: FundArgument,
    date: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD.")],
    *,
    nav: Annotated[str, typer.Option("--nav", help="The NAV (funds other than money-market).")] = "",
    income: Annotated[
        int, typer.Option("--income", min=0, help="Money-market: the date's income, minor units.")
    ] = 0,
    request_id: RequestIdOption = "",
) -> None:
    """Publish a date's price; money-market funds get their 万份收益 and 七日年化 computed."""
    request = pb.PublishPriceRequest(
        fund_code=fund_code, price_date=date, nav=nav, income_minor=income, request_id=request_id
    )
    with connect(ctx) as client:
        response = client.funds.PublishPrice(request)
    emit(ctx, response, lambda: prices_table([response.price]))


@prices_app.command("list")
def list_prices(
    ctx: typer.Context,
    fund_code: FundArgument,
    start: Annotated[str, typer.Option("--from", help="First date, YYYY-MM-DD.")] = "",
    end: Annotated[str, typer.Option("--to", help="Last date, YYYY-MM-DD.")] = "",
) -> None:
    """A fund's prices by date."""
    query = pb.ListPricesRequest(fund_code=fund_code, start_date=start, end_date=end, page_size=PAGE_SIZE)
    with connect(ctx) as client:
        prices = list_all(client.funds.ListPrices, query, lambda r: r.prices)
    emit(ctx, pb.ListPricesResponse(prices=prices), lambda: prices_table(prices))


# Day-closes


@app.command("close")
def close_day(
    ctx: typer.Context,
    fund_code: FundArgument,
    trade_date: Annotated[str, typer.Argument(metavar="DATE", help="The trade date, YYYY-MM-DD.")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is done.")] = True,
    request_id: RequestIdOption = "",
) -> None:
    """Run the day-close of a trade date (fund houses): confirm its orders, carry income forward."""
    request = pb.StartDayCloseRequest(fund_code=fund_code, trade_date=trade_date, request_id=request_id)
    with connect(ctx) as client:
        day_close = client.funds.StartDayClose(request).day_close
        for _ in range(CLOSE_POLLS_MAX if wait else 0):
            if day_close.done:
                break
            time.sleep(CLOSE_POLL_S)
            day_close = client.funds.GetDayClose(pb.GetDayCloseRequest(name=day_close.name)).day_close
    emit(ctx, pb.GetDayCloseResponse(day_close=day_close), lambda: day_close_record(day_close))


@app.command("day-close")
def get_day_close(
    ctx: typer.Context,
    fund_code: FundArgument,
    trade_date: Annotated[str, typer.Argument(metavar="DATE", help="The trade date, YYYY-MM-DD.")],
) -> None:
    """Show a day-close: its phase and, once done, its result."""
    name = f"funds/{fund_code}/dayCloses/{trade_date}"
    with connect(ctx) as client:
        response = client.funds.GetDayClose(pb.GetDayCloseRequest(name=name))
    emit(ctx, response, lambda: day_close_record(response.day_close))


# Investors


@investors_app.command("open")
def open_investor(
    ctx: typer.Context,
    account: AccountArgument,
    *,
    id_type: Annotated[IdType, typer.Option("--id-type", help="The identity document.")] = IdType.ID_CARD,
    id_number: Annotated[str, typer.Option("--id-number", help="Its number (never stored in clear).")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    request_id: RequestIdOption = "",
) -> None:
    """Open (or find) an investor's TA fund account and your trading account under it."""
    request = pb.OpenInvestorRequest(
        trading_account_id=account,
        id_type=pb.IdType.Value(f"ID_TYPE_{id_type.value.upper()}"),
        id_number=id_number,
        display_name=name,
        request_id=request_id,
    )
    with connect(ctx) as client:
        response = client.trading.OpenInvestor(request)
    emit(ctx, response, lambda: investor_record(response.investor))


@investors_app.command("get")
def get_investor(ctx: typer.Context, account: AccountArgument) -> None:
    """Show one of your investors."""
    with connect(ctx) as client:
        response = client.trading.GetInvestor(pb.GetInvestorRequest(trading_account_id=account))
    emit(ctx, response, lambda: investor_record(response.investor))


# Orders


@app.command()
def buy(
    ctx: typer.Context,
    fund_code: FundArgument,
    account: AccountArgument,
    *,
    amount: Annotated[int, typer.Option("--amount", min=1, help="Minor units, fee included.")],
    subscribe: Annotated[bool, typer.Option("--subscribe", help="A subscription (issuing period).")] = False,
    request_id: RequestIdOption = "",
) -> None:
    """Place a purchase (or --subscribe: a subscription) of an amount; answered with its trade date."""
    kind = pb.ORDER_KIND_SUBSCRIPTION if subscribe else pb.ORDER_KIND_PURCHASE
    request = pb.CreateOrderRequest(
        fund_code=fund_code, trading_account_id=account, kind=kind, amount_minor=amount, request_id=request_id
    )
    _place(ctx, request)


@app.command()
def redeem(
    ctx: typer.Context,
    fund_code: FundArgument,
    account: AccountArgument,
    *,
    shares: Annotated[str, typer.Option("--shares", help="Shares, 2 places, e.g. 100.00.")],
    fast: Annotated[
        bool, typer.Option("--fast", help="T+0, confirmed at once (money-market funds).")
    ] = False,
    request_id: RequestIdOption = "",
) -> None:
    """Place a redemption of shares (--fast: a fast redemption, within the fund's daily cap)."""
    request = pb.CreateOrderRequest(
        fund_code=fund_code,
        trading_account_id=account,
        kind=pb.ORDER_KIND_FAST_REDEMPTION if fast else pb.ORDER_KIND_REDEMPTION,
        shares=shares,
        request_id=request_id,
    )
    _place(ctx, request)


class Method(StrEnum):
    CASH = "cash"
    REINVEST = "reinvest"


@app.command("dividend-method")
def dividend_method(
    ctx: typer.Context,
    fund_code: FundArgument,
    account: AccountArgument,
    method: Annotated[Method, typer.Argument(metavar="METHOD", help="cash or reinvest.")],
    request_id: RequestIdOption = "",
) -> None:
    """Change a holding's dividend method (分红方式变更): confirmed by its trade date's day-close."""
    request = pb.CreateOrderRequest(
        fund_code=fund_code,
        trading_account_id=account,
        kind=pb.ORDER_KIND_DIVIDEND_METHOD,
        dividend_method=pb.DividendMethod.Value(f"DIVIDEND_METHOD_{method.value.upper()}"),
        request_id=request_id,
    )
    _place(ctx, request)


@app.command()
def cancel(ctx: typer.Context, order_id: OrderArgument, request_id: RequestIdOption = "") -> None:
    """Cancel an order before its trade date's cut-off."""
    with connect(ctx) as client:
        response = client.trading.CancelOrder(pb.CancelOrderRequest(order_id=order_id, request_id=request_id))
    emit(ctx, response, lambda: order_record(response.order))


@orders_app.command("get")
def get_order(ctx: typer.Context, order_id: OrderArgument) -> None:
    """Show an order."""
    with connect(ctx) as client:
        response = client.trading.GetOrder(pb.GetOrderRequest(order_id=order_id))
    emit(ctx, response, lambda: order_record(response.order))


@orders_app.command("list")
def list_orders(
    ctx: typer.Context,
    fund_code: FundArgument,
    trade_date: Annotated[str, typer.Argument(metavar="DATE", help="The trade date, YYYY-MM-DD.")],
    distributor: DistributorOption = "",
) -> None:
    """The orders of a fund and trade date you may see."""
    query = pb.ListOrdersRequest(
        fund_code=fund_code, trade_date=trade_date, distributor_id=distributor, page_size=PAGE_SIZE
    )
    with connect(ctx) as client:
        orders = list_all(client.trading.ListOrders, query, lambda r: r.orders)
    rows = [
        (o.order_id, o.distributor_id, o.trading_account_id, _order_kind(o), _order_status(o), _order_size(o))
        for o in orders
    ]
    headers = ("order", "distributor", "account", "kind", "status", "amount / shares")
    emit(ctx, pb.ListOrdersResponse(orders=orders), lambda: list_table(headers, rows))


@app.command()
def holding(
    ctx: typer.Context, fund_code: FundArgument, account: AccountArgument, distributor: DistributorOption = ""
) -> None:
    """An investor's holding of a fund: shares, available shares, lots."""
    request = pb.GetHoldingRequest(
        fund_code=fund_code, trading_account_id=account, distributor_id=distributor
    )
    with connect(ctx) as client:
        response = client.trading.GetHolding(request)
    found = response.holding
    rows = [
        ("fund", found.fund_code),
        ("account", found.trading_account_id),
        ("fund account", found.fund_account_id),
        ("shares", found.shares),
        ("available", found.available_shares),
        ("as of", found.as_of_date),
        ("last income (minor)", str(found.last_income_minor)),
        ("income so far (minor)", str(found.income_total_minor)),
        ("dividends", enum_label(pb.DividendMethod.Name(found.dividend_method), "DIVIDEND_METHOD_")),
        *((f"lot {lot.trade_date}", lot.shares) for lot in found.lots),
    ]
    emit(ctx, response, lambda: record_table(rows))


@app.command()
def statement(
    ctx: typer.Context,
    fund_code: Annotated[
        str, typer.Argument(metavar="[FUND]", help="One fund; default every fund you manage or sell.")
    ] = "",
    *,
    start: Annotated[str, typer.Option("--from", help="First date, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last date, YYYY-MM-DD.")],
    account: Annotated[
        str, typer.Option("--account", help="One of your trading accounts: its fund account's statement.")
    ] = "",
    fund_account: Annotated[str, typer.Option("--fund-account", help="A TA fund account (F...).")] = "",
    distributor: DistributorOption = "",
) -> None:
    """A fund account's statement (of one fund or every one): each holding's shares at the start and
    end, and every confirmation, income carried forward and fast redemption in between."""
    if bool(account) == bool(fund_account):
        raise typer.BadParameter("give exactly one of --account and --fund-account")
    with connect(ctx) as client:
        if account:
            investor = client.trading.GetInvestor(pb.GetInvestorRequest(trading_account_id=account))
            fund_account = investor.investor.fund_account_id
        query = pb.GetStatementRequest(
            fund_code=fund_code,
            fund_account_id=fund_account,
            start_date=start,
            end_date=end,
            distributor_id=distributor,
            page_size=PAGE_SIZE,
        )
        # Every page repeats the holdings: the last page's are kept, with every page's entries.
        whole = pb.GetStatementResponse()

        def entries_of(page: pb.GetStatementResponse) -> Sequence[pb.StatementEntry]:
            whole.CopyFrom(page)
            return page.entries

        entries = list_all(client.trading.GetStatement, query, entries_of)
    del whole.entries[:]
    whole.entries.extend(entries)
    whole.next_page_token = ""
    emit(ctx, whole, lambda: statement_tables(whole))


# Rendering


def grants_table(grants: list[pb.Grant]) -> Table:
    rows = [
        (
            g.fund_code,
            g.distributor_id,
            time_label(g.create_time),
            time_label(g.revoke_time) if g.HasField("revoke_time") else "",
        )
        for g in grants
    ]
    return list_table(("fund", "distributor", "granted", "revoked"), rows)


def statement_tables(found: pb.GetStatementResponse) -> Group:
    from rich.console import Group

    holdings = [
        (
            h.fund_code,
            h.distributor_id,
            h.trading_account_id,
            h.opening_shares,
            h.closing_shares,
            enum_label(pb.DividendMethod.Name(h.dividend_method), "DIVIDEND_METHOD_"),
        )
        for h in found.holdings
    ]
    entries = [
        (
            e.date,
            e.fund_code,
            e.trading_account_id,
            enum_label(pb.StatementEntryKind.Name(e.kind), "STATEMENT_ENTRY_KIND_"),
            enum_label(pb.OrderKind.Name(e.order_kind), "ORDER_KIND_") if e.order_id else "",
            enum_label(pb.OrderStatus.Name(e.status), "ORDER_STATUS_") if e.order_id else "",
            str(e.amount_minor),
            str(e.fee_minor),
            e.shares_delta,
            e.balance_shares,
        )
        for e in found.entries
    ]
    return Group(
        list_table(
            ("fund", "distributor", "account", "opening shares", "closing shares", "dividends"), holdings
        ),
        list_table(
            (
                "date",
                "fund",
                "account",
                "entry",
                "order",
                "status",
                "amount (minor)",
                "fee",
                "shares",
                "balance",
            ),
            entries,
        ),
    )


def fund_record(fund: pb.Fund) -> Table:
    return record_table(
        [
            ("fund", fund.fund_code),
            ("name", fund.display_name),
            ("manager", fund.manager_id),
            ("kind", enum_label(pb.FundKind.Name(fund.kind), "FUND_KIND_")),
            ("currency", fund.currency_code),
            ("status", _status_label(fund)),
            ("minimum purchase (minor)", str(fund.minimum_purchase_minor)),
            ("calendar", f"{fund.calendar.time_zone}, cut-off {fund.calendar.cut_off}"),
            ("holidays", ", ".join(fund.calendar.holidays)),
            ("shares", fund.total_shares),
            ("created", time_label(fund.create_time)),
        ]
    )


def day_close_record(day_close: pb.DayClose) -> Table:
    result = day_close.result
    rows = [
        ("day-close", day_close.name),
        ("state", enum_label(pb.DayClose.State.Name(day_close.state), "STATE_")),
        ("phase", enum_label(pb.DayClose.Phase.Name(day_close.phase), "PHASE_")),
    ]
    if day_close.done:
        rows += [
            ("orders confirmed", str(result.orders_confirmed)),
            ("orders failed", str(result.orders_failed)),
            ("holders", str(result.holders)),
            ("shares", result.total_shares),
            ("income (minor)", str(result.income_minor)),
            ("residual (minor)", str(result.residual_minor)),
        ]
        rows += [
            (
                f"{d.distributor_id} (minor)",
                f"purchases {d.purchase_amount_minor} (fees {d.purchase_fee_minor}), "
                f"redemptions paid {d.redemption_amount_minor} (fees {d.redemption_fee_minor})",
            )
            for d in result.distributors
        ]
    return record_table(rows)


def prices_table(prices: list[pb.Price]) -> Table:
    rows = [
        (p.price_date, p.nav, str(p.income_minor), p.income_per_10k_shares, p.seven_day_yield_percent)
        for p in prices
    ]
    return list_table(("date", "nav", "income (minor)", "per 10k shares", "7-day yield %"), rows)


def investor_record(investor: pb.Investor) -> Table:
    return record_table(
        [
            ("trading account", investor.trading_account_id),
            ("fund account", investor.fund_account_id),
            ("distributor", investor.distributor_id),
            ("name", investor.display_name),
            ("created", time_label(investor.create_time)),
        ]
    )


def order_record(order: pb.Order) -> Table:
    return record_table(
        [
            ("order", order.order_id),
            ("fund", order.fund_code),
            ("distributor", order.distributor_id),
            ("account", order.trading_account_id),
            ("fund account", order.fund_account_id),
            ("kind", _order_kind(order)),
            ("status", _order_status(order)),
            ("trade date", order.trade_date),
            ("amount (minor)", str(order.amount_minor or "")),
            ("shares", order.shares),
            ("created", time_label(order.create_time)),
            ("confirmed shares", order.confirmation.shares if order.HasField("confirmation") else ""),
            (
                "confirmed amount (minor)",
                str(order.confirmation.amount_minor) if order.HasField("confirmation") else "",
            ),
            ("fee (minor)", str(order.confirmation.fee_minor) if order.HasField("confirmation") else ""),
            ("refused", order.confirmation.reason),
        ]
    )


def _place(ctx: typer.Context, request: pb.CreateOrderRequest) -> None:
    with connect(ctx) as client:
        response = client.trading.CreateOrder(request)
    emit(ctx, response, lambda: order_record(response.order))


def _status(status: Status) -> pb.FundStatus.ValueType:
    return pb.FundStatus.Value(f"FUND_STATUS_{status.value.upper()}")


def _status_label(fund: pb.Fund) -> str:
    return enum_label(pb.FundStatus.Name(fund.status), "FUND_STATUS_")


def _order_kind(order: pb.Order) -> str:
    return enum_label(pb.OrderKind.Name(order.kind), "ORDER_KIND_")


def _order_status(order: pb.Order) -> str:
    return enum_label(pb.OrderStatus.Name(order.status), "ORDER_STATUS_")


def _order_size(order: pb.Order) -> str:
    return order.shares or str(order.amount_minor)
