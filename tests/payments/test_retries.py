"""A retry gets the first attempt's answer, whatever changed since (AIP-155): for every mutating RPC of
PaymentService, a request is applied, the world changes (time passes, balances move, accounts freeze,
settings change), and the same request id and body are sent again. The retry is answered from what the
first attempt committed (the resource as it is now, or the same refusal) and moves no money again.

Also: a request id reused with another body is REQUEST_ID_REUSED before anything else is looked at,
even when the other body names a hold or escrow that does not exist.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.protobuf.field_mask_pb2 import FieldMask
from jubao.client import AlreadyExists, AsyncClient, FailedPrecondition, NotFound, Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments.conftest import client_of
from tests.payments.support import (
    FUNDS_MINOR,
    balance,
    escrow_request,
    eventually,
    hold_request,
    ledgers_minor,
    leg,
    open_account,
    pay,
    rejected,
    seconds_from_now,
    update_policy,
)
from tests.platform.harness import demo_keys, settings_for, start

# A hold's expire_time and an escrow's release_time this far ahead pass before the retry.
SOON_S = 1.5


async def escrowed(client: AsyncClient, request_id: str) -> pb.Escrow:
    await open_account(client, "escrow", kind=pb.ACCOUNT_KIND_ESCROW)
    return (await client.payments.CreateEscrow(escrow_request(request_id=request_id))).escrow


async def drain_and_freeze(client: AsyncClient, account_id: str) -> None:
    """Move everything out of `account_id` and freeze it both ways."""
    left_minor = (await balance(client, account_id)).available_minor
    if left_minor:
        await pay(client, leg(account_id, "settlement", left_minor))
    await update_policy(client, account_id, debits_frozen=True, credits_frozen=True)


async def test_open_account_retried_after_the_account_changed(funded: AsyncClient) -> None:
    bank = funded
    request = pb.OpenAccountRequest(
        request_id="open-carol",
        account=pb.Account(account_id="carol", currency_code="CNY", kind=pb.ACCOUNT_KIND_CUSTOMER),
    )
    opened = (await bank.payments.OpenAccount(request)).account
    await pay(bank, leg("settlement", "carol", 500))
    await update_policy(bank, "carol", debits_frozen=True)
    again = (await bank.payments.OpenAccount(request)).account
    assert (again.account_id, again.create_time) == (opened.account_id, opened.create_time)
    assert again.balance.ledger_minor == 500 and again.policy.debits_frozen


async def test_update_account_retried_after_another_update_is_not_applied_again(funded: AsyncClient) -> None:
    bank = funded
    freeze = pb.UpdateAccountRequest(
        request_id="freeze-bob",
        account_id="bob",
        policy=pb.AccountPolicy(debits_frozen=True),
        update_mask=FieldMask(paths=["policy"]),
    )
    frozen = (await bank.payments.UpdateAccount(freeze)).account
    assert frozen.policy.debits_frozen
    thawed = await update_policy(bank, "bob")
    again = (await bank.payments.UpdateAccount(freeze)).account
    assert not again.policy.debits_frozen and again.version == thawed.version


async def test_update_account_whose_first_attempt_found_no_account_applies_on_retry(
    bank: AsyncClient,
) -> None:
    """The first attempt claimed the request id and was refused: the retry must apply the change, not
    answer the unchanged account as if it had."""
    rename = pb.UpdateAccountRequest(
        request_id="rename-late",
        account_id="late",
        display_name="Late",
        update_mask=FieldMask(paths=["display_name"]),
    )
    await rejected(bank.payments.UpdateAccount(rename), NotFound, Reason.ACCOUNT_NOT_FOUND)
    await open_account(bank, "late")
    renamed = (await bank.payments.UpdateAccount(rename)).account
    assert renamed.display_name == "Late" and renamed.version == 2


async def test_create_transfer_retried_after_the_payer_was_drained_and_frozen(funded: AsyncClient) -> None:
    bank = funded
    paid = await pay(bank, leg("alice", "bob", 1_000), request_id="pay-bob")
    await drain_and_freeze(bank, "alice")
    again = await pay(bank, leg("alice", "bob", 1_000), request_id="pay-bob")
    assert again.transfer_id == paid.transfer_id and again.state == pb.TRANSFER_STATE_COMPLETED
    assert await ledgers_minor(bank, "alice", "bob") == [0, 1_000]


async def test_batch_retried_after_the_payer_was_drained_and_frozen(funded: AsyncClient) -> None:
    bank = funded
    items = [
        pb.CreateTransferRequest(
            request_id=f"batch-{i}", currency_code="CNY", legs=[leg("alice", "bob", 100)]
        )
        for i in range(3)
    ]
    request = pb.BatchCreateTransfersRequest(requests=items)
    first = (await bank.payments.BatchCreateTransfers(request)).results
    await drain_and_freeze(bank, "alice")
    again = (await bank.payments.BatchCreateTransfers(request)).results
    assert [r.transfer.transfer_id for r in again] == [r.transfer.transfer_id for r in first]
    assert all(r.WhichOneof("result") == "transfer" for r in again)
    assert await ledgers_minor(bank, "bob") == [300]


async def test_holds_and_escrows_retried_after_their_time_passed(funded: AsyncClient) -> None:
    """The probe's case: an escrow released 1.5 s after it was created, its request sent again 3 s
    later, got INVALID_ARGUMENT ("release_time: in the future") although the buyer had paid."""
    bank = funded
    await open_account(bank, "escrow", kind=pb.ACCOUNT_KIND_ESCROW)
    hold_soon = hold_request(expire_time=seconds_from_now(SOON_S), request_id="hold-soon")
    escrow_soon = escrow_request(release_time=seconds_from_now(SOON_S), request_id="escrow-soon")
    hold = (await bank.payments.CreateHold(hold_soon)).hold
    escrow = (await bank.payments.CreateEscrow(escrow_soon)).escrow
    await asyncio.sleep(SOON_S)

    async def states() -> tuple[int, int]:
        held = await bank.payments.GetHold(pb.GetHoldRequest(hold_id=hold.hold_id))
        escrowed_now = await bank.payments.GetEscrow(pb.GetEscrowRequest(escrow_id=escrow.escrow_id))
        return held.hold.state, escrowed_now.escrow.state

    await eventually(states, lambda s: s == (pb.HOLD_STATE_EXPIRED, pb.ESCROW_STATE_RELEASED))
    hold_again = (await bank.payments.CreateHold(hold_soon)).hold
    assert (hold_again.hold_id, hold_again.state) == (hold.hold_id, pb.HOLD_STATE_EXPIRED)
    escrow_again = (await bank.payments.CreateEscrow(escrow_soon)).escrow
    assert (escrow_again.escrow_id, escrow_again.state) == (escrow.escrow_id, pb.ESCROW_STATE_RELEASED)
    assert await ledgers_minor(bank, "alice", "shop") == [FUNDS_MINOR - 1_000, 1_000]


async def test_create_hold_retried_after_the_payer_was_drained_and_frozen(funded: AsyncClient) -> None:
    bank = funded
    request = hold_request(request_id="hold-1")
    hold = (await bank.payments.CreateHold(request)).hold
    await bank.payments.VoidHold(pb.VoidHoldRequest(request_id="void-1", hold_id=hold.hold_id))
    await drain_and_freeze(bank, "alice")
    again = (await bank.payments.CreateHold(request)).hold
    assert (again.hold_id, again.state) == (hold.hold_id, pb.HOLD_STATE_VOIDED)


async def test_capture_and_void_retried_after_the_accounts_were_frozen(funded: AsyncClient) -> None:
    bank = funded
    captured_hold = (await bank.payments.CreateHold(hold_request(request_id="hold-c"))).hold
    voided_hold = (await bank.payments.CreateHold(hold_request(request_id="hold-v"))).hold
    capture = pb.CaptureHoldRequest(request_id="capture-1", hold_id=captured_hold.hold_id, amount_minor=400)
    void = pb.VoidHoldRequest(request_id="void-1", hold_id=voided_hold.hold_id)
    captured = (await bank.payments.CaptureHold(capture)).hold
    voided = (await bank.payments.VoidHold(void)).hold
    await drain_and_freeze(bank, "alice")
    await update_policy(bank, "shop", credits_frozen=True)
    assert (await bank.payments.CaptureHold(capture)).hold == captured
    assert (await bank.payments.VoidHold(void)).hold == voided
    assert await ledgers_minor(bank, "shop") == [400]


async def test_escrow_payouts_retried_after_the_escrow_moved_on(funded: AsyncClient) -> None:
    bank = funded
    escrow = await escrowed(bank, "escrow-1")
    refund = pb.RefundEscrowRequest(request_id="refund-1", escrow_id=escrow.escrow_id, amount_minor=300)
    refunded = (await bank.payments.RefundEscrow(refund)).escrow
    assert refunded.refunded_minor == 300
    release = pb.ReleaseEscrowRequest(request_id="release-1", escrow_id=escrow.escrow_id)
    released = (await bank.payments.ReleaseEscrow(release)).escrow
    await drain_and_freeze(bank, "alice")
    await update_policy(bank, "shop", credits_frozen=True)
    again = (await bank.payments.RefundEscrow(refund)).escrow
    assert (again.state, again.refunded_minor) == (pb.ESCROW_STATE_RELEASED, 300)
    assert (await bank.payments.ReleaseEscrow(release)).escrow == released
    assert await ledgers_minor(bank, "shop") == [700]


async def test_dispute_retried_after_the_escrow_was_refunded(funded: AsyncClient) -> None:
    """Refunded since, the escrow is not HELD any more: the retry still gets the escrow, not
    INVALID_STATE as if the dispute had been refused."""
    bank = funded
    escrow = await escrowed(bank, "escrow-d")
    dispute = pb.DisputeEscrowRequest(request_id="dispute-1", escrow_id=escrow.escrow_id)
    assert (await bank.payments.DisputeEscrow(dispute)).escrow.state == pb.ESCROW_STATE_DISPUTED
    await bank.payments.RefundEscrow(
        pb.RefundEscrowRequest(request_id="refund-all", escrow_id=escrow.escrow_id)
    )
    again = (await bank.payments.DisputeEscrow(dispute)).escrow
    assert (again.escrow_id, again.state) == (escrow.escrow_id, pb.ESCROW_STATE_REFUNDED)


async def test_refund_retried_after_its_window_setting_closed(tmp_path: Path) -> None:
    """The refund window is a setting: a server restarted with a window long past still answers the
    retry of a refund it made."""
    keys = demo_keys()
    running = await start(settings_for(tmp_path / "jubao.db"))
    try:
        async with client_of(running, keys["demo-bank"]) as bank:
            await open_account(bank, "settlement", kind=pb.ACCOUNT_KIND_SETTLEMENT, allow_negative=True)
            await open_account(bank, "shop")
            paid = await pay(bank, leg("settlement", "shop", 1_000))
            request = pb.CreateRefundRequest(
                request_id="refund-1", transfer_id=paid.transfer_id, amount_minor=400
            )
            refund = (await bank.payments.CreateRefund(request)).refund
    finally:
        await running.close()
    running = await start(settings_for(tmp_path / "jubao.db", payments={"refund_window_s": 1}))
    try:
        async with client_of(running, keys["demo-bank"]) as bank:
            await asyncio.sleep(1.1)
            late = pb.CreateRefundRequest(request_id="refund-2", transfer_id=paid.transfer_id, amount_minor=1)
            await rejected(bank.payments.CreateRefund(late), FailedPrecondition, Reason.REFUND_WINDOW_CLOSED)
            assert (await bank.payments.CreateRefund(request)).refund == refund
            assert await ledgers_minor(bank, "shop") == [600]
    finally:
        await running.close()


async def test_a_reused_request_id_is_refused_before_the_item_is_looked_up(funded: AsyncClient) -> None:
    """The same request id with only another, non-existent hold or escrow id is REQUEST_ID_REUSED."""
    bank = funded
    captured = (await bank.payments.CreateHold(hold_request(request_id="hold-c"))).hold
    voided = (await bank.payments.CreateHold(hold_request(request_id="hold-v"))).hold
    escrow = await escrowed(bank, "escrow-r")
    disputed = (await bank.payments.CreateEscrow(escrow_request(request_id="escrow-d"))).escrow
    pairs = [
        (pb.CaptureHoldRequest(request_id="c", hold_id=captured.hold_id), bank.payments.CaptureHold),
        (pb.VoidHoldRequest(request_id="v", hold_id=voided.hold_id), bank.payments.VoidHold),
        (pb.DisputeEscrowRequest(request_id="d", escrow_id=disputed.escrow_id), bank.payments.DisputeEscrow),
        (
            pb.RefundEscrowRequest(request_id="f", escrow_id=escrow.escrow_id, amount_minor=1),
            bank.payments.RefundEscrow,
        ),
        (pb.ReleaseEscrowRequest(request_id="r", escrow_id=escrow.escrow_id), bank.payments.ReleaseEscrow),
    ]
    for request, call in pairs:
        await call(request)  # type: ignore[operator]
        other = type(request)()
        other.CopyFrom(request)
        setattr(other, "hold_id" if hasattr(other, "hold_id") else "escrow_id", "nothing-here")
        await rejected(call(other), AlreadyExists, Reason.REQUEST_ID_REUSED)  # type: ignore[operator]
