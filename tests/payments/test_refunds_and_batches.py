"""Refunds of transfer legs, balances as of a past time and batches of transfers, end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from jubao.cli.common import EXIT_PARTIAL
from jubao.client import AsyncClient, FailedPrecondition, InvalidArgument, NotFound, Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments.support import (
    FUNDS_MINOR,
    cli_of,
    completed,
    entries,
    item_error,
    ledgers_minor,
    leg,
    open_account,
    pay,
    rejected,
    seconds_from_now,
)
from tests.platform.harness import Running

BATCH_SIZE = 50
BATCH_AMOUNT_MINOR = 10
# Index of a bad item -> the reason it fails with.
BAD_ITEMS = {
    5: Reason.INVALID_ARGUMENT,
    10: Reason.ACCOUNT_NOT_FOUND,
    20: Reason.INVALID_ARGUMENT,
    30: Reason.CURRENCY_MISMATCH,
    40: Reason.INVALID_ARGUMENT,
}


async def refund(
    client: AsyncClient, transfer_id: str, amount_minor: int, leg_index: int = 0, request_id: str = ""
) -> pb.Refund:
    request = pb.CreateRefundRequest(
        request_id=request_id, transfer_id=transfer_id, leg_index=leg_index, amount_minor=amount_minor
    )
    return (await client.payments.CreateRefund(request)).refund


async def test_refunds_of_a_leg_never_exceed_it(funded: AsyncClient) -> None:
    bank = funded
    paid = await completed(
        bank, (await pay(bank, leg("alice", "shop", 1_000), leg("alice", "fees", 200))).transfer_id
    )
    first = await refund(bank, paid.transfer_id, 400, request_id="refund-1")
    assert (first.transfer_id, first.leg_index, first.amount_minor) == (paid.transfer_id, 0, 400)
    assert first.refund_id and first.request_id == "refund-1"
    back = await completed(bank, first.refund_transfer_id)
    assert list(back.legs) == [leg("shop", "alice", 400)]
    assert await refund(bank, paid.transfer_id, 400, request_id="refund-1") == first
    await refund(bank, paid.transfer_id, 600)
    await refund(bank, paid.transfer_id, 200, leg_index=1)
    settled = [FUNDS_MINOR, 0, 0]
    assert await ledgers_minor(bank, "alice", "shop", "fees") == settled
    await rejected(refund(bank, paid.transfer_id, 1), FailedPrecondition, Reason.REFUND_EXCEEDS_ORIGINAL)
    await rejected(
        refund(bank, paid.transfer_id, 1, leg_index=1), FailedPrecondition, Reason.REFUND_EXCEEDS_ORIGINAL
    )
    await rejected(refund(bank, paid.transfer_id, 1, leg_index=2), InvalidArgument, Reason.INVALID_ARGUMENT)
    await rejected(refund(bank, "tr_nope", 1), NotFound, Reason.TRANSFER_NOT_FOUND)
    assert await ledgers_minor(bank, "alice", "shop", "fees") == settled
    assert len(await entries(bank, "shop")) == 3


async def test_balance_as_of_a_past_time(funded: AsyncClient) -> None:
    bank = funded
    await asyncio.sleep(0.01)
    await pay(bank, leg("alice", "bob", 1_500))
    funding, spending = await entries(bank, "alice")
    assert funding.time.ToMilliseconds() < spending.time.ToMilliseconds()

    async def alice_at(time_ms: int) -> tuple[int, int]:
        request = pb.GetBalanceRequest(account_id="alice")
        request.as_of_time.FromMilliseconds(time_ms)
        response = await bank.payments.GetBalance(request)
        assert response.account_id == "alice" and response.as_of_time.ToMilliseconds() == time_ms
        return response.ledger_minor, response.entry_seq

    assert await alice_at(funding.time.ToMilliseconds() - 1) == (0, 0)
    assert await alice_at(funding.time.ToMilliseconds()) == (FUNDS_MINOR, 1)
    assert await alice_at(spending.time.ToMilliseconds() - 1) == (FUNDS_MINOR, 1)
    assert await alice_at(spending.time.ToMilliseconds()) == (FUNDS_MINOR - 1_500, 2)
    future = pb.GetBalanceRequest(account_id="alice", as_of_time=seconds_from_now(60))
    await rejected(bank.payments.GetBalance(future), InvalidArgument, Reason.INVALID_ARGUMENT)
    missing = pb.GetBalanceRequest(account_id="nobody", as_of_time=seconds_from_now(-1))
    await rejected(bank.payments.GetBalance(missing), NotFound, Reason.ACCOUNT_NOT_FOUND)


def batch_item(index: int) -> pb.CreateTransferRequest:
    """alice pays bob BATCH_AMOUNT_MINOR, except the items of BAD_ITEMS."""
    item = pb.CreateTransferRequest(
        request_id=f"batch-{index}", currency_code="CNY", legs=[leg("alice", "bob", BATCH_AMOUNT_MINOR)]
    )
    if index == 5:
        item.legs[0].amount_minor = 0
    if index == 10:
        item.legs[0].credit_account_id = "nobody"
    if index == 20:
        item.request_id = ""
    if index == 30:
        item.currency_code = "USD"
    if index == 40:
        item.memo = "m" * 201
    return item


async def test_a_batch_reports_each_item_and_replays_safely(funded: AsyncClient) -> None:
    bank = funded
    request = pb.BatchCreateTransfersRequest(requests=[batch_item(index) for index in range(BATCH_SIZE)])
    results = (await bank.payments.BatchCreateTransfers(request)).results
    assert len(results) == BATCH_SIZE
    for index, result in enumerate(results):
        if index in BAD_ITEMS:
            assert result.WhichOneof("result") == "error", index
            assert item_error(result.error).reason == BAD_ITEMS[index], index
        else:
            assert result.transfer.request_id == f"batch-{index}", index
    paid_minor = (BATCH_SIZE - len(BAD_ITEMS)) * BATCH_AMOUNT_MINOR
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR - paid_minor, paid_minor]
    again = (await bank.payments.BatchCreateTransfers(request)).results
    assert [r.transfer.transfer_id for r in again] == [r.transfer.transfer_id for r in results]
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR - paid_minor, paid_minor]
    assert len(await entries(bank, "alice")) == 1 + BATCH_SIZE - len(BAD_ITEMS)


async def test_a_malformed_batch_fails_as_a_whole(funded: AsyncClient) -> None:
    bank = funded
    empty = pb.BatchCreateTransfersRequest()
    await rejected(bank.payments.BatchCreateTransfers(empty), InvalidArgument, Reason.INVALID_ARGUMENT)
    oversized = pb.BatchCreateTransfersRequest(requests=[batch_item(index) for index in range(1_001)])
    await rejected(bank.payments.BatchCreateTransfers(oversized), InvalidArgument, Reason.INVALID_ARGUMENT)
    items = [batch_item(index) for index in range(3)]
    items[2].request_id = items[0].request_id
    repeated = pb.BatchCreateTransfersRequest(requests=items)
    error = await rejected(
        bank.payments.BatchCreateTransfers(repeated), InvalidArgument, Reason.INVALID_ARGUMENT
    )
    assert [(v.field, v.description) for v in error.field_violations] == [
        ("requests[2].request_id", "repeats requests[0].request_id")
    ]
    assert await ledgers_minor(bank, "alice", "bob") == [FUNDS_MINOR, 0]


async def test_cli_holds_and_escrows(running: Running, keys: dict[str, str], funded: AsyncClient) -> None:
    cli = cli_of(running, keys["demo-bank"])
    await open_account(funded, "escrow", kind=pb.ACCOUNT_KIND_ESCROW)
    later = ["--currency", "CNY", "--expires", seconds_from_now(3600).ToJsonString()]
    hold_args = ["holds", "create", "--from", "alice", "--to", "shop", "--amount", "300", *later]
    held = (await cli(*hold_args, "--request-id", "hold-1"))["hold"]
    assert held["requestId"] == "hold-1"
    assert (await cli(*hold_args, "--request-id", "hold-1"))["hold"]["holdId"] == held["holdId"]
    captured = (await cli("holds", "capture", held["holdId"], "--amount", "100", "--request-id", "cap-1"))[
        "hold"
    ]
    assert captured["state"] == "HOLD_STATE_CAPTURED" and captured["capturedMinor"] == "100"
    assert (await cli("holds", "get", held["holdId"]))["hold"] == captured
    voidable = (await cli("holds", "create", "--from", "alice", "--to", "shop", "--amount", "5", *later))[
        "hold"
    ]
    assert (await cli("holds", "void", voidable["holdId"]))["hold"]["state"] == "HOLD_STATE_VOIDED"
    parties = ["--buyer", "alice", "--seller", "shop", "--escrow-account", "escrow", "--currency", "CNY"]
    terms = [*parties, "--release-at", seconds_from_now(3600).ToJsonString()]
    fee = ["--fee", "40", "--fee-account", "fees"]
    escrow = await cli("escrows", "create", *terms, "--amount", "400", *fee, "--request-id", "esc-1")
    assert escrow["escrow"]["requestId"] == "esc-1"
    escrow_id = escrow["escrow"]["escrowId"]
    assert (await cli("escrows", "dispute", escrow_id))["escrow"]["state"] == "ESCROW_STATE_DISPUTED"
    refunded = (await cli("escrows", "refund", escrow_id))["escrow"]
    assert refunded["state"] == "ESCROW_STATE_REFUNDED" and refunded["refundedMinor"] == "400"
    assert (await cli("escrows", "get", escrow_id))["escrow"] == refunded
    second_id = (await cli("escrows", "create", *terms, "--amount", "50"))["escrow"]["escrowId"]
    assert (await cli("escrows", "release", second_id))["escrow"]["state"] == "ESCROW_STATE_RELEASED"
    assert await ledgers_minor(funded, "alice", "shop") == [FUNDS_MINOR - 150, 150]


async def test_cli_refunds_balances_and_batches(
    running: Running, keys: dict[str, str], funded: AsyncClient, tmp_path: Path
) -> None:
    cli = cli_of(running, keys["demo-bank"])
    paid = await completed(funded, (await pay(funded, leg("alice", "shop", 100))).transfer_id)
    refund_args = ["refund", paid.transfer_id, "--leg", "0", "--amount", "30", "--request-id", "back-1"]
    back = (await cli(*refund_args))["refund"]
    assert back["requestId"] == "back-1" and (await cli(*refund_args))["refund"] == back
    assert back["amountMinor"] == "30" and back["transferId"] == paid.transfer_id
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join([batch_line("cli-1", 7), "", batch_line("", 0)]))
    results = (await cli("batch", str(path), exit_code=EXIT_PARTIAL))["results"]
    assert results[0]["transfer"]["requestId"] == "cli-1" and results[1]["error"]["code"] == 3
    balance = await cli("balance", "alice", "--at", seconds_from_now(-0.001).ToJsonString())
    assert balance["ledgerMinor"] == str(FUNDS_MINOR - 100 + 30 - 7)


def batch_line(request_id: str, amount_minor: int) -> str:
    leg_json = {"debitAccountId": "alice", "creditAccountId": "bob", "amountMinor": str(amount_minor)}
    return json.dumps({"requestId": request_id, "currencyCode": "CNY", "legs": [leg_json]})
