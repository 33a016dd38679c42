"""Escrows (guaranteed transactions) end to end: fund, release less the fee, refund, dispute, auto-release."""

from __future__ import annotations

import pytest
from jubao.client import AsyncClient, FailedPrecondition, InvalidArgument, NotFound, Reason
from jubao.payments.v1 import payments_pb2 as pb

from tests.payments import support
from tests.payments.support import (
    FUNDS_MINOR,
    eventually,
    ledgers_minor,
    open_account,
    rejected,
    seconds_from_now,
    update_policy,
)

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
AMOUNT_MINOR = 1_000
FEE_MINOR = 50
PARTIES = ("alice", "escrow", "shop", "fees")


def escrow_request(release_in_s: float = HOUR_S, **fields: int | str) -> pb.CreateEscrowRequest:
    """alice buys from shop for AMOUNT_MINOR through the escrow account, FEE_MINOR going to fees."""
    request = support.escrow_request(AMOUNT_MINOR, seconds_from_now(release_in_s), fee_minor=FEE_MINOR)
    for field, value in fields.items():
        setattr(request, field, value)
    return request


@pytest.fixture
async def market(funded: AsyncClient) -> AsyncClient:
    """`funded` plus the escrow account."""
    await open_account(funded, "escrow", kind=pb.ACCOUNT_KIND_ESCROW)
    return funded


async def create(client: AsyncClient, request: pb.CreateEscrowRequest | None = None) -> pb.Escrow:
    return (await client.payments.CreateEscrow(request or escrow_request())).escrow


async def release(client: AsyncClient, escrow_id: str) -> pb.Escrow:
    return (await client.payments.ReleaseEscrow(pb.ReleaseEscrowRequest(escrow_id=escrow_id))).escrow


async def refund(client: AsyncClient, escrow_id: str, amount_minor: int = 0) -> pb.Escrow:
    request = pb.RefundEscrowRequest(escrow_id=escrow_id, amount_minor=amount_minor)
    return (await client.payments.RefundEscrow(request)).escrow


async def dispute(client: AsyncClient, escrow_id: str) -> pb.Escrow:
    return (await client.payments.DisputeEscrow(pb.DisputeEscrowRequest(escrow_id=escrow_id))).escrow


async def get_escrow(client: AsyncClient, escrow_id: str) -> pb.Escrow:
    return (await client.payments.GetEscrow(pb.GetEscrowRequest(escrow_id=escrow_id))).escrow


async def test_an_escrow_holds_the_payment_until_released(market: AsyncClient) -> None:
    bank = market
    request = escrow_request()
    created = await create(bank, request)
    assert created.escrow_id and created.request_id == request.request_id
    assert created.state == pb.ESCROW_STATE_HELD and created.release_time == request.release_time
    assert (created.amount_minor, created.fee_minor, created.refunded_minor) == (AMOUNT_MINOR, FEE_MINOR, 0)
    assert await ledgers_minor(bank, *PARTIES) == [FUNDS_MINOR - AMOUNT_MINOR, AMOUNT_MINOR, 0, 0]
    assert await create(bank, request) == created
    assert await ledgers_minor(bank, *PARTIES) == [FUNDS_MINOR - AMOUNT_MINOR, AMOUNT_MINOR, 0, 0]
    released = await release(bank, created.escrow_id)
    assert released.state == pb.ESCROW_STATE_RELEASED
    paid = [FUNDS_MINOR - AMOUNT_MINOR, 0, AMOUNT_MINOR - FEE_MINOR, FEE_MINOR]
    assert await eventually(lambda: ledgers_minor(bank, *PARTIES), lambda found: found == paid) == paid
    await rejected(release(bank, created.escrow_id), FailedPrecondition, Reason.INVALID_STATE)
    await rejected(refund(bank, created.escrow_id), FailedPrecondition, Reason.INVALID_STATE)
    await rejected(dispute(bank, created.escrow_id), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, *PARTIES) == paid


async def test_a_partial_refund_then_release_of_the_rest(market: AsyncClient) -> None:
    bank = market
    created = await create(bank)
    partly = await refund(bank, created.escrow_id, 300)
    assert partly.state == pb.ESCROW_STATE_HELD and partly.refunded_minor == 300
    await rejected(refund(bank, created.escrow_id, 701), FailedPrecondition, Reason.REFUND_EXCEEDS_ORIGINAL)
    assert await get_escrow(bank, created.escrow_id) == partly
    await release(bank, created.escrow_id)
    paid = [FUNDS_MINOR - 700, 0, 700 - FEE_MINOR, FEE_MINOR]
    assert await eventually(lambda: ledgers_minor(bank, *PARTIES), lambda found: found == paid) == paid


async def test_a_dispute_blocks_release_but_not_refund(market: AsyncClient) -> None:
    bank = market
    created = await create(bank)
    assert (await dispute(bank, created.escrow_id)).state == pb.ESCROW_STATE_DISPUTED
    await rejected(release(bank, created.escrow_id), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, *PARTIES) == [FUNDS_MINOR - AMOUNT_MINOR, AMOUNT_MINOR, 0, 0]
    refunded = await refund(bank, created.escrow_id)
    assert refunded.state == pb.ESCROW_STATE_REFUNDED and refunded.refunded_minor == AMOUNT_MINOR
    back = [FUNDS_MINOR, 0, 0, 0]
    assert await eventually(lambda: ledgers_minor(bank, *PARTIES), lambda found: found == back) == back
    await rejected(refund(bank, created.escrow_id, 1), FailedPrecondition, Reason.INVALID_STATE)


async def test_an_escrow_releases_itself_when_its_window_ends(market: AsyncClient) -> None:
    bank = market
    created = await create(bank, escrow_request(release_in_s=1.5))
    disputed = await create(bank, escrow_request(release_in_s=1.5))
    await dispute(bank, disputed.escrow_id)
    released = await eventually(
        lambda: get_escrow(bank, created.escrow_id), lambda e: e.state != pb.ESCROW_STATE_HELD
    )
    assert released.state == pb.ESCROW_STATE_RELEASED
    paid = [FUNDS_MINOR - 2 * AMOUNT_MINOR, AMOUNT_MINOR, AMOUNT_MINOR - FEE_MINOR, FEE_MINOR]
    assert await eventually(lambda: ledgers_minor(bank, *PARTIES), lambda found: found == paid) == paid
    assert (await get_escrow(bank, disputed.escrow_id)).state == pb.ESCROW_STATE_DISPUTED


BAD_ESCROWS: list[tuple[pb.CreateEscrowRequest, str]] = [
    (escrow_request(amount_minor=0, fee_minor=0, fee_account_id=""), "amount_minor"),
    (escrow_request(fee_minor=AMOUNT_MINOR), "fee_minor"),
    (escrow_request(fee_minor=-1), "fee_minor"),
    (escrow_request(fee_account_id=""), "fee_account_id"),
    (escrow_request(fee_minor=0), "fee_account_id"),
    (escrow_request(seller_account_id="alice"), "seller_account_id"),
    (escrow_request(escrow_account_id="shop"), "escrow_account_id"),
    (escrow_request(release_in_s=-1.0), "release_time"),
    (escrow_request(release_in_s=91 * DAY_S), "release_time"),
]


@pytest.mark.parametrize(("request_", "field"), BAD_ESCROWS)
async def test_bad_escrows_are_invalid(
    market: AsyncClient, request_: pb.CreateEscrowRequest, field: str
) -> None:
    error = await rejected(market.payments.CreateEscrow(request_), InvalidArgument, Reason.INVALID_ARGUMENT)
    assert [violation.field for violation in error.field_violations] == [field]
    assert await ledgers_minor(market, *PARTIES) == [FUNDS_MINOR, 0, 0, 0]


async def test_escrow_refusals(market: AsyncClient) -> None:
    bank = market
    not_escrow = escrow_request(escrow_account_id="bob")
    await rejected(bank.payments.CreateEscrow(not_escrow), FailedPrecondition, Reason.INVALID_STATE)
    too_much = escrow_request(amount_minor=FUNDS_MINOR + 1)
    await rejected(bank.payments.CreateEscrow(too_much), FailedPrecondition, Reason.INSUFFICIENT_FUNDS)
    await rejected(release(bank, "es_nope"), NotFound, Reason.ESCROW_NOT_FOUND)
    await rejected(get_escrow(bank, "es_nope"), NotFound, Reason.ESCROW_NOT_FOUND)
    assert await ledgers_minor(bank, *PARTIES, "bob") == [FUNDS_MINOR, 0, 0, 0, 0]


async def test_a_refund_refused_by_the_buyer_is_kept_for_retries(market: AsyncClient) -> None:
    bank = market
    escrow = await create(bank)
    await update_policy(bank, "alice", credits_frozen=True)
    request = pb.RefundEscrowRequest(request_id="refund-1", escrow_id=escrow.escrow_id, amount_minor=100)
    await rejected(bank.payments.RefundEscrow(request), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    await update_policy(bank, "alice")
    await rejected(bank.payments.RefundEscrow(request), FailedPrecondition, Reason.ACCOUNT_FROZEN)
    assert (await get_escrow(bank, escrow.escrow_id)).refunded_minor == 0
    await release(bank, escrow.escrow_id)
    late = pb.RefundEscrowRequest(request_id="refund-2", escrow_id=escrow.escrow_id, amount_minor=100)
    await rejected(bank.payments.RefundEscrow(late), FailedPrecondition, Reason.INVALID_STATE)
    await rejected(bank.payments.RefundEscrow(late), FailedPrecondition, Reason.INVALID_STATE)
    assert await ledgers_minor(bank, *PARTIES) == [
        FUNDS_MINOR - AMOUNT_MINOR,
        0,
        AMOUNT_MINOR - FEE_MINOR,
        FEE_MINOR,
    ]
