"""Grants listed and revoked, on a server of each shared backend: a manager lists its funds' grants, a
distributor its own; after a revoke the distributor's new orders are refused with FUND_NOT_GRANTED while
the order it placed before is still confirmed and its investor keeps the holding; bad requests are refused
with their reason and change nothing."""

from __future__ import annotations

from jubao.client import AsyncClient
from jubao.fundta.v1 import fundta_pb2 as pb
from jubao.reasons import Code

from tests.fundta.conftest import Cast
from tests.fundta.support import SetClock, money_market, open_investor, purchase, refused
from tests.fundta.test_day_close import close_day, publish


async def _grants(client: AsyncClient, code: str = "", page_size: int = 0) -> list[tuple[str, str, bool]]:
    """Every grant the client lists, page by page."""
    seen: list[tuple[str, str, bool]] = []
    token = ""
    for _ in range(20):
        page = await client.funds.ListGrants(
            pb.ListGrantsRequest(fund_code=code, page_size=page_size, page_token=token)
        )
        seen += [(g.fund_code, g.distributor_id, g.HasField("revoke_time")) for g in page.grants]
        token = page.next_page_token
        if not token:
            return seen
    raise AssertionError("ListGrants did not end")


async def test_grants_are_listed_by_whom_they_concern(cast: Cast) -> None:
    codes = [f"{cast.code}{i}" for i in range(2)]
    platform, bank = cast.ids["platform"], cast.ids["bank"]
    for code in codes:
        await cast.manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(code)))
        for distributor in sorted((platform, bank)):
            await cast.manager.funds.GrantFund(
                pb.GrantFundRequest(fund_code=code, distributor_id=distributor)
            )
    every = [(code, d, False) for code in codes for d in sorted((platform, bank))]
    assert await _grants(cast.manager) == every
    assert await _grants(cast.manager, page_size=1) == every
    assert await _grants(cast.manager, codes[1]) == every[2:]
    assert await _grants(cast.platform) == [(code, platform, False) for code in codes]
    assert await _grants(cast.bank, codes[0], page_size=1) == [(codes[0], bank, False)]
    assert not await _grants(cast.other_manager)
    await refused(
        cast.other_manager.funds.ListGrants(pb.ListGrantsRequest(fund_code=codes[0])),
        Code.NOT_FOUND,
        "FUND_NOT_FOUND",
    )
    error = await refused(
        cast.manager.funds.ListGrants(pb.ListGrantsRequest(fund_code="x")),
        Code.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    assert [v.field for v in error.field_violations] == ["fund_code"]


async def test_a_revoked_distributor_places_no_new_orders_but_keeps_what_it_placed(
    cast: Cast, clock: SetClock
) -> None:
    code = cast.code
    platform = cast.ids["platform"]
    await cast.manager.funds.CreateFund(pb.CreateFundRequest(fund=money_market(code)))
    await cast.manager.funds.GrantFund(pb.GrantFundRequest(fund_code=code, distributor_id=platform))
    await open_investor(cast.platform, "alice", "11010519491231002X")
    placed = await purchase(cast.platform, code, "alice", 1000_00)
    waiting = await purchase(cast.platform, code, "alice", 200_00)

    def revoke(distributor: str, request_id: str = "") -> pb.RevokeGrantRequest:
        return pb.RevokeGrantRequest(fund_code=code, distributor_id=distributor, request_id=request_id)

    # Only the manager revokes, and only a grant it gave; nothing changes.
    await refused(
        cast.platform.funds.RevokeGrant(revoke(platform)), Code.PERMISSION_DENIED, "NOT_FUND_MANAGER"
    )
    await refused(cast.other_manager.funds.RevokeGrant(revoke(platform)), Code.NOT_FOUND, "FUND_NOT_FOUND")
    await refused(cast.manager.funds.RevokeGrant(revoke(cast.ids["bank"])), Code.NOT_FOUND, "GRANT_NOT_FOUND")
    error = await refused(
        cast.manager.funds.RevokeGrant(revoke("No!")), Code.INVALID_ARGUMENT, "INVALID_ARGUMENT"
    )
    assert [v.field for v in error.field_violations] == ["distributor_id"]
    assert await _grants(cast.manager) == [(code, platform, False)]

    revoked = (await cast.manager.funds.RevokeGrant(revoke(platform, "revoke-1"))).grant
    assert revoked.HasField("revoke_time") and revoked.distributor_id == platform
    # The retry answers the same; a second revoke is refused.
    assert (await cast.manager.funds.RevokeGrant(revoke(platform, "revoke-1"))).grant == revoked
    await refused(cast.manager.funds.RevokeGrant(revoke(platform)), Code.FAILED_PRECONDITION, "INVALID_STATE")
    assert await _grants(cast.platform) == [(code, platform, True)]

    await refused(purchase(cast.platform, code, "alice", 100_00), Code.PERMISSION_DENIED, "FUND_NOT_GRANTED")
    # It still cancels what it placed, and the day-close confirms the rest.
    await cast.platform.trading.CancelOrder(pb.CancelOrderRequest(order_id=waiting.order_id))
    clock.set_local("2026-12-04 16:00:00")
    await publish(cast.manager, code, "2026-12-04", 0)
    done = await close_day(cast.manager, code, "2026-12-04")
    assert done.result.orders_confirmed == 1
    order = (await cast.platform.trading.GetOrder(pb.GetOrderRequest(order_id=placed.order_id))).order
    assert order.status == pb.ORDER_STATUS_CONFIRMED
    holding = (
        await cast.platform.trading.GetHolding(
            pb.GetHoldingRequest(fund_code=code, trading_account_id="alice")
        )
    ).holding
    assert holding.shares == "1000.00"
    await refused(
        cast.platform.trading.CreateOrder(
            pb.CreateOrderRequest(
                fund_code=code, trading_account_id="alice", kind=pb.ORDER_KIND_REDEMPTION, shares="1.00"
            )
        ),
        Code.PERMISSION_DENIED,
        "FUND_NOT_GRANTED",
    )

    # Granted again, it sells again.
    await cast.manager.funds.GrantFund(pb.GrantFundRequest(fund_code=code, distributor_id=platform))
    assert await _grants(cast.manager) == [(code, platform, False)]
    assert (await purchase(cast.platform, code, "alice", 100_00)).status == pb.ORDER_STATUS_ACCEPTED
