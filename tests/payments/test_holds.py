"""Holds (two-phase payments) end to end: reserve, capture all or part, void, expire."""

from __future__ import annotations

import pytest
from jubao.client import AsyncClient, FailedPrecondition, InvalidArgument, NotFound, Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments.support import (
    FUNDS_MINOR,
    HOUR_S,
    balance,
    completed,
    eventually,
    hold_request,
    ledgers_minor,
    leg,
    pay,
    rejected,
    seconds_from_now,
    update_policy,
)

DAY_S = 24 * HOUR_S


async def hold(client: AsyncClient, amount_minor: int, expires_in_s: float = HOUR_S) -> pb.Hold:
    request = hold_request(amount_minor, seconds_from_now(expires_in_s))
    return (await client.payments.CreateHold(request)).hold


async def capture(client: AsyncClient, hold_id: str, amount_minor: int = 0, request_id: str = "") -> pb.Hold:
    request = pb.CaptureHoldRequest(request_id=request_id, hold_id=hold_id, amount_minor=amount_minor)
    return (await client.payments.CaptureHold(request)).hold


async def void(client: AsyncClient, hold_id: str) -> pb.Hold:
    return (await client.payments.VoidHold(pb.VoidHoldRequest(hold_id=hold_id))).hold


async def get_hold(client: AsyncClient, hold_id: str) -> pb.Hold:
    return (await client.payments.GetHold(pb.GetHoldRequest(hold_id=hold_id))).hold


def alice_balance(held_minor: int, spent_minor: int = 0) -> pb.Balance:
    ledger_minor = FUNDS_MINOR - spent_minor
    return pb.Balance(
        ledger_minor=ledger_minor, held_minor=held_minor, available_minor=ledger_minor - held_minor
    )


async def test_a_hold_reserves_without_posting(funded: AsyncClient) -> None:
    bank = funded
    request = hold_request(3_000)
    created = (await bank.payments.CreateHold(request)).hold
    assert created.hold_id and created.request_id == request.request_id
    assert created.state == pb.HOLD_STATE_HELD and created.expire_time == request.expire_time
    assert (created.account_id, created.payee_account_id, created.amount_minor) == ("alice", "shop", 3_000)
    assert created.create_time.seconds > 0 and created.captured_minor == 0
    assert await balance(bank, "alice") == alice_balance(held_minor=3_000)
    assert (await bank.payments.CreateHold(request)).hold == created
    assert await balance(bank, "alice") == alice_balance(held_minor=3_000)
    await rejected(pay(bank, leg("alice", "bob", 7_001)), FailedPrecondition, Reason.INSUFFICIENT_FUNDS)
    await rejected(hold(bank, 7_001), FailedPrecondition, Reason.INSUFFICIENT_FUNDS)
    assert await get_hold(bank, created.hold_id) == created


async def test_a_partial_capture_pays_only_the_captured_part(funded: AsyncClient) -> None:
    bank = funded
    held = await hold(bank, 3_000)
    captured = await capture(bank, held.hold_id, 1_000, request_id="capture-1")
    assert captured.state == pb.HOLD_STATE_CAPTURED and captured.captured_minor == 1_000
    transfer = await completed(bank, captured.capture_transfer_id)
    assert list(transfer.legs) == [leg("alice", "shop", 1_000)]
    assert await balance(bank, "alice") == alice_balance(held_minor=0, spent_minor=1_000)
    assert await ledgers_minor(bank, "shop") == [1_000]
    assert await capture(bank, held.hold_id, 1_000, request_id="capture-1") == captured
    await rejected(capture(bank, held.hold_id, 1_000), FailedPrecondition, Reason.INVALID_STATE)
    await rejected(capture(bank, held.hold_id), FailedPrecondition, Reason.INVALID_STATE)
    await rejected(void(bank, held.hold_id), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR - 1_000, 1_000]


async def test_capturing_more_than_held_changes_nothing(funded: AsyncClient) -> None:
    bank = funded
    held = await hold(bank, 500)
    await rejected(capture(bank, held.hold_id, 501), FailedPrecondition, Reason.AMOUNT_EXCEEDS_HOLD)
    assert await get_hold(bank, held.hold_id) == held
    assert await balance(bank, "alice") == alice_balance(held_minor=500)
    everything = await capture(bank, held.hold_id)
    assert everything.captured_minor == 500 and everything.state == pb.HOLD_STATE_CAPTURED
    await completed(bank, everything.capture_transfer_id)
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR - 500, 500]


async def test_a_voided_hold_releases_and_cannot_be_captured(funded: AsyncClient) -> None:
    bank = funded
    held = await hold(bank, 2_000)
    voided = await void(bank, held.hold_id)
    assert voided.state == pb.HOLD_STATE_VOIDED and voided.captured_minor == 0
    assert await balance(bank, "alice") == alice_balance(held_minor=0)
    await rejected(capture(bank, held.hold_id), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR, 0]
    missing = bank.payments.GetHold(pb.GetHoldRequest(hold_id="hd_nope"))
    await rejected(missing, NotFound, Reason.HOLD_NOT_FOUND)
    await rejected(capture(bank, "hd_nope"), NotFound, Reason.HOLD_NOT_FOUND)


async def test_a_hold_expires_by_itself(funded: AsyncClient) -> None:
    bank = funded
    held = await hold(bank, 4_000, expires_in_s=1.5)
    assert await balance(bank, "alice") == alice_balance(held_minor=4_000)
    expired = await eventually(lambda: get_hold(bank, held.hold_id), lambda h: h.state != pb.HOLD_STATE_HELD)
    assert expired.state == pb.HOLD_STATE_EXPIRED
    assert await balance(bank, "alice") == alice_balance(held_minor=0)
    await rejected(capture(bank, held.hold_id), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR, 0]


@pytest.mark.parametrize(
    ("amount_minor", "expires_in_s"),
    [(0, HOUR_S), (-1, HOUR_S), (1, -1.0), (1, 31 * DAY_S)],
)
async def test_bad_holds_are_invalid(funded: AsyncClient, amount_minor: int, expires_in_s: float) -> None:
    await rejected(hold(funded, amount_minor, expires_in_s), InvalidArgument, Reason.INVALID_ARGUMENT)
    assert await balance(funded, "alice") == alice_balance(held_minor=0)


async def test_a_hold_refused_by_its_payee_is_kept_for_retries(funded: AsyncClient) -> None:
    bank = funded
    await update_policy(bank, "shop", credits_frozen=True)
    request = hold_request(100)
    request.request_id = "hold-order-1"
    await rejected(bank.payments.CreateHold(request), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    await update_policy(bank, "shop")
    await rejected(bank.payments.CreateHold(request), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    assert (await balance(bank, "alice")) == alice_balance(held_minor=0)
    request.request_id = "hold-order-2"
    assert (await bank.payments.CreateHold(request)).hold.state == pb.HOLD_STATE_HELD
