"""Investor statements and dividend method changes end to end, on a server of each shared backend: a week of a
money-market fund held by one person through two distributors, with hand-computed figures; each
distributor sees its own trading account's part, the manager every one; bad requests are refused with
their reason and change nothing; orders stored before orders wrote their index row are indexed by the
data migration, and their statements replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Code
from jubao_server.app import migrate
from jubao_server.fundta.agency import visible_fund
from jubao_server.fundta.data_migrations import index_orders
from jubao_server.fundta.tables import HOLDERS
from jubao_server.platform.data_migrations import DATA_MIGRATIONS
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    Bound,
    Delete,
    PartitionRef,
    RowQuery,
    StorageBackend,
    read_all,
)

from tests.fundta.conftest import Cast
from tests.fundta.support import SetClock, money_market, open_investor, purchase, refused
from tests.fundta.test_day_close import close_day, publish

ID_NUMBER = "11010519491231002X"
E = pb.StatementEntryKind


def _order(code: str, account: str, kind: int, **fields: object) -> pb.CreateOrderRequest:
    return pb.CreateOrderRequest(fund_code=code, trading_account_id=account, kind=kind, **fields)  # type: ignore[arg-type]


async def _week(cast: Cast, clock: SetClock) -> str:
    """Friday: the platform's alice buys 1,000 yuan, the bank's (the same person) 500. Saturday's income
    is 1.50 yuan (万份收益 10.0000): 1.00 and 0.50. Monday: alice redeems 100.00 shares fast and asks for
    cash dividends; Tuesday (not closed yet): 1.00 share fast, and the bank buys again. The fund account."""
    code = cast.code
    await cast.manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(code)))
    for role in ("platform", "bank"):
        await cast.manager.funds.GrantFund(pb.GrantFundRequest(fund_code=code, distributor_id=cast.ids[role]))
    alice = await open_investor(cast.platform, "alice", ID_NUMBER)
    await open_investor(cast.bank, "6222-01", ID_NUMBER)
    await purchase(cast.platform, code, "alice", 1000_00)
    await purchase(cast.bank, code, "6222-01", 500_00)
    clock.set_local("2026-12-04 16:00:00")
    await publish(cast.manager, code, "2026-12-04", 77)
    await close_day(cast.manager, code, "2026-12-04")

    clock.set_local("2026-12-07 10:00:00")
    fast = pb.ORDER_KIND_FAST_REDEMPTION
    await cast.platform.trading.CreateOrder(_order(code, "alice", fast, shares="100.00"))
    changed = await cast.platform.trading.CreateOrder(
        _order(code, "alice", pb.ORDER_KIND_DIVIDEND_METHOD, dividend_method=pb.DIVIDEND_METHOD_CASH)
    )
    assert (changed.order.status, changed.order.trade_date) == (pb.ORDER_STATUS_ACCEPTED, "2026-12-07")
    assert changed.order.dividend_method == pb.DIVIDEND_METHOD_CASH
    clock.set_local("2026-12-07 16:00:00")
    for day, income in (("2026-12-05", 150), ("2026-12-06", 0), ("2026-12-07", 0)):
        await publish(cast.manager, code, day, income)
    await close_day(cast.manager, code, "2026-12-07")
    confirmed = await cast.platform.trading.GetOrder(pb.GetOrderRequest(order_id=changed.order.order_id))
    assert (confirmed.order.status, confirmed.order.confirmation.return_code) == (
        pb.ORDER_STATUS_CONFIRMED,
        "0000",
    )

    clock.set_local("2026-12-08 10:00:00")
    await cast.platform.trading.CreateOrder(_order(code, "alice", fast, shares="1.00"))
    await purchase(cast.bank, code, "6222-01", 300_00)
    return alice.fund_account_id


def _entries(page: pb.GetStatementResponse) -> list[tuple[str, str, int, str, str, int]]:
    return [
        (e.date, e.trading_account_id, e.kind, e.shares_delta, e.balance_shares, e.amount_minor)
        for e in page.entries
    ]


def _holdings(page: pb.GetStatementResponse) -> list[tuple[str, str, str, int]]:
    return [
        (h.trading_account_id, h.opening_shares, h.closing_shares, h.dividend_method) for h in page.holdings
    ]


async def _statement(
    client: AsyncClient, code: str, account: str, start: str, end: str, **fields: object
) -> pb.GetStatementResponse:
    request = pb.GetStatementRequest(
        fund_code=code,
        fund_account_id=account,
        start_date=start,
        end_date=end,
        **fields,  # type: ignore[arg-type]
    )
    return await client.trading.GetStatement(request)


async def test_a_statement_replays_the_orders_incomes_and_fast_redemptions(
    cast: Cast, clock: SetClock
) -> None:
    account = await _week(cast, clock)
    code = cast.code
    whole = await _statement(cast.manager, code, account, "2026-12-04", "2026-12-08")
    assert (whole.fund_code, whole.fund_account_id, whole.currency_code) == (code, account, "CNY")
    assert _holdings(whole) == [
        ("6222-01", "0.00", "500.50", pb.DIVIDEND_METHOD_REINVEST),
        ("alice", "0.00", "900.00", pb.DIVIDEND_METHOD_CASH),
    ]
    assert _entries(whole) == [
        ("2026-12-04", "6222-01", E.STATEMENT_ENTRY_KIND_CONFIRMATION, "500.00", "500.00", 500_00),
        ("2026-12-05", "6222-01", E.STATEMENT_ENTRY_KIND_INCOME, "0.50", "500.50", 50),
        ("2026-12-04", "alice", E.STATEMENT_ENTRY_KIND_CONFIRMATION, "1000.00", "1000.00", 1000_00),
        ("2026-12-05", "alice", E.STATEMENT_ENTRY_KIND_INCOME, "1.00", "1001.00", 100),
        ("2026-12-07", "alice", E.STATEMENT_ENTRY_KIND_FAST_REDEMPTION, "-100.00", "901.00", 100_00),
        ("2026-12-07", "alice", E.STATEMENT_ENTRY_KIND_CONFIRMATION, "0.00", "901.00", 0),
        ("2026-12-08", "alice", E.STATEMENT_ENTRY_KIND_FAST_REDEMPTION, "-1.00", "900.00", 1_00),
    ]
    changed = whole.entries[5]
    assert (changed.order_kind, changed.status, changed.dividend_method, changed.return_code) == (
        pb.ORDER_KIND_DIVIDEND_METHOD,
        pb.ORDER_STATUS_CONFIRMED,
        pb.DIVIDEND_METHOD_CASH,
        "0000",
    )
    assert whole.entries[0].order_kind == pb.ORDER_KIND_PURCHASE and whole.entries[0].nav == "1.0000"

    # The platform sees its own trading account only, and the holding agrees with GetHolding.
    mine = await _statement(cast.platform, code, account, "2026-12-05", "2026-12-07")
    assert _holdings(mine) == [("alice", "1000.00", "901.00", pb.DIVIDEND_METHOD_CASH)]
    assert [e[2] for e in _entries(mine)] == [
        E.STATEMENT_ENTRY_KIND_INCOME,
        E.STATEMENT_ENTRY_KIND_FAST_REDEMPTION,
        E.STATEMENT_ENTRY_KIND_CONFIRMATION,
    ]
    holding = (
        await cast.platform.trading.GetHolding(
            pb.GetHoldingRequest(fund_code=code, trading_account_id="alice")
        )
    ).holding
    assert (holding.shares, holding.dividend_method) == ("900.00", pb.DIVIDEND_METHOD_CASH)
    theirs = await _statement(cast.bank, code, account, "2026-12-04", "2026-12-08")
    assert [h.trading_account_id for h in theirs.holdings] == ["6222-01"] and len(theirs.entries) == 2
    one = await _statement(
        cast.manager, code, account, "2026-12-04", "2026-12-08", distributor_id=cast.ids["bank"]
    )
    assert _holdings(one) == _holdings(theirs) and _entries(one) == _entries(theirs)

    # Paged: every page repeats the holdings.
    seen: list[tuple[str, str, int, str, str, int]] = []
    token = ""
    for _ in range(10):
        page = await _statement(
            cast.manager, code, account, "2026-12-04", "2026-12-08", page_size=3, page_token=token
        )
        assert _holdings(page) == _holdings(whole) and len(page.entries) <= 3
        seen += _entries(page)
        token = page.next_page_token
        if not token:
            break
    assert seen == _entries(whole)

    # Every fund at once (no fund code): a second fund's holding joins, each line naming its fund.
    second = f"{code}2"
    await cast.manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(second)))
    grant = pb.GrantFundRequest(fund_code=second, distributor_id=cast.ids["platform"])
    await cast.manager.funds.GrantFund(grant)
    await purchase(cast.platform, second, "alice", 200_00)  # waiting for its day-close
    every = await _statement(cast.platform, "", account, "2026-12-04", "2026-12-08")
    assert [
        (h.fund_code, h.trading_account_id, h.closing_shares, h.currency_code) for h in every.holdings
    ] == [
        (code, "alice", "900.00", "CNY"),
        (second, "alice", "0.00", "CNY"),
    ]
    assert (every.fund_code, every.currency_code) == ("", "")
    assert {e.fund_code for e in every.entries} == {code} and len(every.entries) == 5
    everything = await _statement(cast.manager, "", account, "2026-12-04", "2026-12-08")
    assert [(h.fund_code, h.trading_account_id) for h in everything.holdings] == [
        (code, "6222-01"),
        (code, "alice"),
        (second, "alice"),
    ]
    assert not (await _statement(cast.other_manager, "", account, "2026-12-04", "2026-12-08")).holdings
    await refused(
        _statement(
            cast.manager, code, account, "2026-12-04", "2026-12-09", page_size=3, page_token=token or "x"
        ),
        Code.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )


async def test_statements_and_dividend_method_changes_refuse_bad_requests(
    cast: Cast, clock: SetClock
) -> None:
    account = await _week(cast, clock)
    code = cast.code
    error = await refused(
        _statement(cast.manager, "x", "G1", "2026-12-09", "2026-12-08", distributor_id="No"),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert {v.field for v in error.field_violations} == {
        "fund_code",
        "fund_account_id",
        "end_date",
        "distributor_id",
    }
    # Another manager's fund is not found; an ungranted distributor's neither; a distributor reads only its
    # own part; a fund account without holdings the caller sees has an empty statement.
    await refused(
        _statement(cast.other_manager, code, account, "2026-12-04", "2026-12-08"),
        Code.NOT_FOUND,
        "FUND_NOT_FOUND",
    )
    await refused(
        _statement(cast.platform, code, account, "2026-12-04", "2026-12-08", distributor_id=cast.ids["bank"]),
        Code.PERMISSION_DENIED,
        "NOT_FUND_MANAGER",
    )
    nobody = await _statement(cast.manager, code, "F" + "0" * 20, "2026-12-04", "2026-12-08")
    assert not nobody.holdings and not nobody.entries

    orders = pb.ListOrdersRequest(
        fund_code=code, trade_date="2026-12-08", distributor_id=cast.ids["platform"]
    )
    before = (await cast.manager.trading.ListOrders(orders)).orders
    method = pb.ORDER_KIND_DIVIDEND_METHOD
    for request, field in (
        (_order(code, "alice", method), "dividend_method"),
        (
            _order(code, "alice", method, dividend_method=pb.DIVIDEND_METHOD_CASH, amount_minor=100),
            "amount_minor",
        ),
        (
            _order(
                code,
                "alice",
                pb.ORDER_KIND_PURCHASE,
                amount_minor=100,
                dividend_method=pb.DIVIDEND_METHOD_CASH,
            ),
            "dividend_method",
        ),
    ):
        error = await refused(
            cast.platform.trading.CreateOrder(request), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"
        )
        assert [v.field for v in error.field_violations] == [field]
    cash = _order(code, "alice", method, dividend_method=pb.DIVIDEND_METHOD_REINVEST)
    await refused(cast.other_manager.trading.CreateOrder(cash), Code.PERMISSION_DENIED, "FUND_NOT_GRANTED")
    await refused(
        cast.bank.trading.CreateOrder(
            _order(code, "nobody", method, dividend_method=pb.DIVIDEND_METHOD_CASH)
        ),
        Code.NOT_FOUND,
        "INVESTOR_NOT_FOUND",
    )
    closed = pb.Fund(fund_code=code, status=pb.FUND_STATUS_CLOSED)
    await cast.manager.funds.UpdateFund(
        pb.UpdateFundRequest(fund=closed, update_mask=FieldMask(paths=["status"]))
    )
    await refused(cast.platform.trading.CreateOrder(cash), Code.FAILED_PRECONDITION, "FUND_SUSPENDED")
    assert (await cast.manager.trading.ListOrders(orders)).orders == before


async def _deferrals(cast: Cast, clock: SetClock) -> str:
    """A PRO_RATA fund of 2,000.00 shares: alice redeems 500.00 on Monday, 10 % of the fund (200.00) is
    confirmed and 300.00 deferred; on Tuesday 180.00 of those (10 % of 1,800.00), 120.00 deferred again.
    Alice's fund account."""
    code = cast.code
    fund = money_market(code, large_redemption_rule=pb.LARGE_REDEMPTION_RULE_PRO_RATA)
    await cast.manager.funds.CreateFund(pb.CreateFundRequest(fund=fund))
    await cast.manager.funds.GrantFund(
        pb.GrantFundRequest(fund_code=code, distributor_id=cast.ids["platform"])
    )
    alice = await open_investor(cast.platform, "alice", ID_NUMBER)
    await open_investor(cast.platform, "bob", "110105194912310038")
    await purchase(cast.platform, code, "alice", 1000_00)
    await purchase(cast.platform, code, "bob", 1000_00)
    clock.set_local("2026-12-04 16:00:00")
    await publish(cast.manager, code, "2026-12-04", 0)
    await close_day(cast.manager, code, "2026-12-04")
    clock.set_local("2026-12-07 10:00:00")
    await cast.platform.trading.CreateOrder(_order(code, "alice", pb.ORDER_KIND_REDEMPTION, shares="500.00"))
    clock.set_local("2026-12-07 16:00:00")
    for day in ("2026-12-05", "2026-12-06", "2026-12-07"):
        await publish(cast.manager, code, day, 0)
    await close_day(cast.manager, code, "2026-12-07")
    clock.set_local("2026-12-08 16:00:00")
    await publish(cast.manager, code, "2026-12-08", 0)
    await close_day(cast.manager, code, "2026-12-08")
    return alice.fund_account_id


async def test_a_statement_follows_the_rests_large_redemption_days_deferred(
    cast: Cast, clock: SetClock
) -> None:
    account = await _deferrals(cast, clock)
    code = cast.code
    found = await _statement(cast.platform, code, account, "2026-12-07", "2026-12-09")
    assert _holdings(found) == [("alice", "1000.00", "620.00", pb.DIVIDEND_METHOD_REINVEST)]
    assert [(e[0], e[3], e[4], e[5]) for e in _entries(found)] == [
        ("2026-12-07", "-200.00", "800.00", 200_00),
        ("2026-12-08", "-180.00", "620.00", 180_00),
    ]
    assert [e.status for e in found.entries] == [pb.ORDER_STATUS_PARTIALLY_CONFIRMED] * 2


@pytest.mark.parametrize("scenario", [_week, _deferrals], ids=["week", "deferrals"])
async def test_the_order_index_migration_indexes_the_orders_placed_before_the_index(
    cast: Cast, clock: SetClock, scenario: Callable[[Cast, SetClock], Awaitable[str]]
) -> None:
    """The orders of the first trade date stored as orders were before they wrote their index row (the rows
    gone; the later orders keep theirs): a statement cannot replay the positions and fails INTERNAL. The
    data migration writes back exactly the rows the orders wrote (never one for the rest of a deferred
    redemption, which a statement reaches through the order it continues), and the statements are what
    they were; run again, it changes nothing."""
    account = await scenario(cast, clock)
    code, backend = cast.code, cast.backend
    fund, _ = await visible_fund(backend, cast.ids["manager"], code)
    shards = [HOLDERS.partition(fund.manager_id, code, shard) for shard in range(fund.holder_shard_count)]
    clients = (cast.manager, cast.platform)
    statements = [await _statement(client, code, account, "2026-12-04", "2026-12-09") for client in clients]
    written = await _index_rows(backend, shards)
    assert {key.split("/")[2] for _, _, key in written} >= {"2026-12-04", "2026-12-07"}
    for partition in shards:
        old = tuple(
            Delete((kind, key)) for at, kind, key in written if at == partition and "/2026-12-04/" in key
        )
        if old:
            await backend.write(Batch(partition, deletes=old))
    whole = _statement(cast.manager, code, account, "2026-12-04", "2026-12-09")
    await refused(whole, Code.INTERNAL, "INTERNAL")

    await backend.write(Batch(DATA_MIGRATIONS.partition(PLATFORM_SCOPE), deletes=(Delete(("fund_ta", 1)),)))
    assert "fund_ta/0001_fund_ta_order_index" in await migrate(backend)
    assert await _index_rows(backend, shards) == written
    assert "fund_ta/0001_fund_ta_order_index" not in await migrate(backend)
    assert await index_orders(backend) >= len(written)
    assert await _index_rows(backend, shards) == written
    for client, before in zip(clients, statements, strict=True):
        assert await _statement(client, code, account, "2026-12-04", "2026-12-09") == before


async def _index_rows(
    backend: StorageBackend, shards: list[PartitionRef]
) -> list[tuple[PartitionRef, str, str]]:
    """The order index rows of the fund's holder shards (row kinds "account:<fund account>")."""
    found: list[tuple[PartitionRef, str, str]] = []
    for partition in shards:
        query = RowQuery(partition, Bound(("account:",), True), Bound(("account;",), False), limit=100)
        async for row in read_all(backend, query, 100, lambda: AssertionError("too many index rows")):
            found.append((partition, row.as_text("row_kind"), row.as_text("row_key")))
    return found
