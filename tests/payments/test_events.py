"""PaymentService.WatchEvents through the SDK: history from the oldest event kept, live events, resuming
from a cursor with stable ids, filters, tenants apart, bad cursors."""

from __future__ import annotations

import asyncio

import pytest
from jubao.client import AsyncClient, InvalidArgument
from jubao.errors import Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments.support import cli_of, leg, pay, rejected
from tests.platform.harness import Running

WAIT_S = 10.0


async def take(client: AsyncClient, request: pb.WatchEventsRequest, count: int) -> tuple[list[pb.Event], str]:
    """The first `count` events of a stream and the cursor after the last response read."""
    events: list[pb.Event] = []
    cursor = ""
    stream = client.payments.WatchEvents(request)
    async with asyncio.timeout(WAIT_S):
        async for response in stream:
            events += response.events
            cursor = response.cursor
            if len(events) >= count:
                break
    return events, cursor


def kinds(events: list[pb.Event]) -> list[str]:
    return [pb.EventKind.Name(event.kind).removeprefix("EVENT_KIND_") for event in events]


async def test_history_comes_in_order_per_account_and_resumes_from_a_cursor(funded: AsyncClient) -> None:
    bank = funded
    history, _ = await take(bank, pb.WatchEventsRequest(from_oldest=True), 6)
    assert kinds(history).count("ACCOUNT_OPENED") == 5
    alice = [entry for e in history for entry in e.entries if entry.account_id == "alice"]
    assert [entry.entry_seq for entry in alice] == list(range(1, len(alice) + 1))
    assert alice[0].balance_after_minor == alice[0].amount_minor > 0
    first, cursor = await take(bank, pb.WatchEventsRequest(from_oldest=True), 1)
    again, _ = await take(bank, pb.WatchEventsRequest(from_oldest=True), 6)
    assert [e.event_id for e in again[:6]] == [e.event_id for e in history[:6]]
    paid = await pay(bank, leg("alice", "bob", 250))
    resumed, _ = await take(bank, pb.WatchEventsRequest(cursor=cursor), 1)
    assert {e.event_id for e in first}.isdisjoint(e.event_id for e in resumed)
    later, _ = await take(bank, pb.WatchEventsRequest(cursor=cursor, account_id="bob"), 1)
    assert later[-1].transfer_id == paid.transfer_id or any(e.transfer_id == paid.transfer_id for e in later)


async def test_live_events_arrive_filtered_by_account_and_kind(funded: AsyncClient) -> None:
    bank = funded
    wanted = pb.WatchEventsRequest(account_id="shop", kinds=[pb.EVENT_KIND_TRANSFER_COMPLETED])
    watching = asyncio.create_task(take(bank, wanted, 1))
    await asyncio.sleep(0.3)
    await pay(bank, leg("alice", "bob", 10))
    paid = await pay(bank, leg("alice", "shop", 40))
    events, _ = await watching
    [event] = events
    assert event.transfer_id == paid.transfer_id
    assert {"alice", "shop"} <= set(event.account_ids)


async def test_tenants_see_only_their_own_events(funded: AsyncClient, platform: AsyncClient) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            async for response in platform.payments.WatchEvents(pb.WatchEventsRequest(from_oldest=True)):
                assert not response.events


async def test_bad_cursors_and_kinds_are_invalid(funded: AsyncClient) -> None:
    for request in (
        pb.WatchEventsRequest(cursor="not-a-cursor"),
        pb.WatchEventsRequest(kinds=[pb.EVENT_KIND_UNSPECIFIED]),
        pb.WatchEventsRequest(account_id="no spaces allowed"),
    ):
        await rejected(take(funded, request, 1), InvalidArgument, Reason.INVALID_ARGUMENT)


async def test_the_cli_prints_events_from_the_oldest(
    funded: AsyncClient, running: Running, keys: dict[str, str]
) -> None:
    cli = cli_of(running, keys["demo-bank"])
    first = await cli("events", "--from-oldest", "--count", "1")
    assert first["events"][0]["kind"] == "EVENT_KIND_ACCOUNT_OPENED"
    assert first["cursor"]
