"""What an outside probe found the payments API accepted badly: page tokens that could be forged, or
carried from one query to another (AIP-158), and timestamps outside the range of the type."""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from jubao.client import AsyncClient, InvalidArgument, Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments.support import escrow_request, hold_request, leg, pay, rejected


async def _first_page(client: AsyncClient, request: pb.ListEntriesRequest) -> str:
    response = await client.payments.ListEntries(request)
    assert response.next_page_token
    return response.next_page_token


def _entries(
    account_id: str, token: str = "", page_size: int = 1, **times: Timestamp
) -> pb.ListEntriesRequest:
    return pb.ListEntriesRequest(account_id=account_id, page_size=page_size, page_token=token, **times)


async def test_a_forged_or_altered_page_token_is_invalid(funded: AsyncClient) -> None:
    bank = funded
    await pay(bank, leg("alice", "bob", 10))
    token = await _first_page(bank, _entries("alice"))
    forged = base64.urlsafe_b64encode(b"ListEntries\n99999999999999999999999").decode()
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    for bad in (forged, altered, "garbage", "€" * 100, "A" * 2_000):
        await rejected(
            bank.payments.ListEntries(_entries("alice", bad)), InvalidArgument, Reason.INVALID_PAGE_TOKEN
        )
    await rejected(
        bank.payments.ListAccounts(pb.ListAccountsRequest(page_token=forged)),
        InvalidArgument,
        Reason.INVALID_PAGE_TOKEN,
    )


async def test_a_page_token_is_only_good_for_the_query_that_issued_it(
    funded: AsyncClient, platform: AsyncClient
) -> None:
    """Same method, tenant and parameters (page_size may change, AIP-158); anything else is refused."""
    bank = funded
    await pay(bank, leg("alice", "bob", 10))
    await pay(bank, leg("alice", "bob", 20))
    token = await _first_page(bank, _entries("alice"))
    second = await bank.payments.ListEntries(_entries("alice", token, page_size=5))
    assert [e.entry_seq for e in second.entries] == [2, 3]
    since = Timestamp(seconds=1)
    for changed in (_entries("bob", token), _entries("alice", token, start_time=since)):
        await rejected(bank.payments.ListEntries(changed), InvalidArgument, Reason.INVALID_PAGE_TOKEN)
    accounts = await bank.payments.ListAccounts(pb.ListAccountsRequest(page_size=1))
    await rejected(
        bank.payments.ListEntries(_entries("alice", accounts.next_page_token)),
        InvalidArgument,
        Reason.INVALID_PAGE_TOKEN,
    )
    await rejected(
        platform.payments.ListAccounts(pb.ListAccountsRequest(page_token=accounts.next_page_token)),
        InvalidArgument,
        Reason.INVALID_PAGE_TOKEN,
    )


async def test_out_of_range_timestamps_are_invalid_arguments_naming_the_field(funded: AsyncClient) -> None:
    """They used to raise in the protobuf runtime and answer INTERNAL."""
    bank = funded
    hold = hold_request(1, Timestamp(nanos=-1), "h-1")
    escrow = escrow_request(1, Timestamp(seconds=2**63 - 1), "e-1")
    calls: list[tuple[Awaitable[Any], str]] = [
        (
            bank.payments.ListEntries(
                _entries("alice", start_time=Timestamp(seconds=1, nanos=2_000_000_000))
            ),
            "start_time",
        ),
        (
            bank.payments.ListEntries(_entries("alice", end_time=Timestamp(seconds=253_402_300_800))),
            "end_time",
        ),
        (
            bank.payments.GetBalance(
                pb.GetBalanceRequest(account_id="alice", as_of_time=Timestamp(seconds=-(2**63)))
            ),
            "as_of_time",
        ),
        (bank.payments.CreateHold(hold), "expire_time"),
        (bank.payments.CreateEscrow(escrow), "release_time"),
    ]
    for call, field in calls:
        error = await rejected(call, InvalidArgument, Reason.INVALID_ARGUMENT)
        assert [v.field for v in error.field_violations] == [field]
