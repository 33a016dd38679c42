"""Holds, escrow (担保交易), refunds and past balances, on every backend."""

from __future__ import annotations

import asyncio
import time

import pytest
from jubao.errors import Reason
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import EscrowCommand, HoldCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger, Shard
from jubao_server.payments.model import AccountKind, AccountPolicy, EscrowState, HoldState, OpenAccountCommand
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import StorageBackend

from tests.ledger.conftest import SHARDS
from tests.ledger.support import CURRENCY, balance, ids_in_distinct_shards, key, open_account, pay, total

wait_steps_max = 60


@pytest.fixture
async def ledger(backend: StorageBackend, settings: PaymentsSettings) -> Ledger:
    return Ledger(backend, settings)


def later_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


async def test_hold_capture_releases_the_rest(ledger: Ledger, tenant: str) -> None:
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await open_account(ledger, tenant, merchant)
    await pay(ledger, tenant, bank, (buyer, 1_000))
    hold = await ledger.create_hold(
        tenant, HoldCommand(buyer, merchant, CURRENCY, 600, later_ms(60)), key("h1")
    )
    view = await ledger.get_account(tenant, buyer)
    assert (view.balance.ledger_minor, view.balance.held_minor, view.balance.available_minor) == (
        1_000,
        600,
        400,
    )
    with pytest.raises(ApiError) as short:
        await pay(ledger, tenant, buyer, (merchant, 401))
    assert short.value.reason == Reason.INSUFFICIENT_FUNDS
    with pytest.raises(ApiError) as over:
        await ledger.capture_hold(tenant, hold.hold_id, 601, key())
    assert over.value.reason == Reason.AMOUNT_EXCEEDS_HOLD
    captured = await ledger.capture_hold(tenant, hold.hold_id, 450, key("c1"))
    assert (captured.state, captured.captured_minor) == (HoldState.CAPTURED, 450)
    assert await ledger.capture_hold(tenant, hold.hold_id, 450, key("c1")) == captured
    with pytest.raises(ApiError) as twice:
        await ledger.capture_hold(tenant, hold.hold_id, 10, key("c2"))
    assert twice.value.reason == Reason.INVALID_STATE
    view = await ledger.get_account(tenant, buyer)
    assert (view.balance.ledger_minor, view.balance.held_minor) == (550, 0)
    assert await balance(ledger, tenant, merchant) == 450 and await total(ledger, tenant) == 0
    await ledger.stop()


async def test_void_and_expiry_release_holds(ledger: Ledger, tenant: str) -> None:
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await open_account(ledger, tenant, merchant)
    await pay(ledger, tenant, bank, (buyer, 1_000))
    voided = await ledger.create_hold(
        tenant, HoldCommand(buyer, merchant, CURRENCY, 300, later_ms(60)), key()
    )
    assert (await ledger.void_hold(tenant, voided.hold_id, key())).state is HoldState.VOIDED
    expiring = await ledger.create_hold(
        tenant, HoldCommand(buyer, merchant, CURRENCY, 700, later_ms(1.2)), key()
    )
    assert (await ledger.get_account(tenant, buyer)).balance.held_minor == 700
    for _ in range(wait_steps_max):
        if (await ledger.get_hold(tenant, expiring.hold_id)).state is HoldState.EXPIRED:
            break
        await asyncio.sleep(0.1)
    assert (await ledger.get_hold(tenant, expiring.hold_id)).state is HoldState.EXPIRED
    view = await ledger.get_account(tenant, buyer)
    assert (view.balance.ledger_minor, view.balance.held_minor) == (1_000, 0)
    with pytest.raises(ApiError) as late:
        await ledger.capture_hold(tenant, expiring.hold_id, 0, key())
    assert late.value.reason == Reason.INVALID_STATE
    await ledger.stop()


async def _escrow_accounts(ledger: Ledger, tenant: str) -> tuple[str, str, str, str]:
    bank, buyer, seller, fees = ids_in_distinct_shards("acct", SHARDS, 4)
    await open_account(ledger, tenant, bank, allow_negative=True)
    for account in (buyer, seller, fees):
        await open_account(ledger, tenant, account)
    holder = OpenAccountCommand("escrow-pool", CURRENCY, AccountKind.ESCROW, AccountPolicy(), "escrow pool")
    await ledger.open_account(tenant, holder, key())
    await pay(ledger, tenant, bank, (buyer, 10_000))
    return buyer, seller, fees, "escrow-pool"


async def test_escrow_release_with_fee_after_partial_refund(ledger: Ledger, tenant: str) -> None:
    buyer, seller, fees, pool = await _escrow_accounts(ledger, tenant)
    command = EscrowCommand(buyer, seller, pool, CURRENCY, 5_000, fees, 100, later_ms(3600))
    escrow = await ledger.create_escrow(tenant, command, key("order-1"))
    assert escrow.state is EscrowState.HELD
    assert [await balance(ledger, tenant, a) for a in (buyer, pool)] == [5_000, 5_000]
    refunded = await ledger.refund_escrow(tenant, escrow.escrow_id, 1_000, key())
    assert (refunded.state, refunded.refunded_minor) == (EscrowState.HELD, 1_000)
    released = await ledger.release_escrow(tenant, escrow.escrow_id, key())
    assert released.state is EscrowState.RELEASED
    assert [await balance(ledger, tenant, a) for a in (buyer, seller, fees, pool)] == [6_000, 3_900, 100, 0]
    with pytest.raises(ApiError) as again:
        await ledger.refund_escrow(tenant, escrow.escrow_id, 1, key())
    assert again.value.reason == Reason.INVALID_STATE
    assert await total(ledger, tenant) == 0
    await ledger.stop()


async def test_dispute_blocks_release_and_escrow_auto_releases(ledger: Ledger, tenant: str) -> None:
    buyer, seller, fees, pool = await _escrow_accounts(ledger, tenant)
    disputed = await ledger.create_escrow(
        tenant, EscrowCommand(buyer, seller, pool, CURRENCY, 2_000, "", 0, later_ms(1.0)), key()
    )
    await ledger.dispute_escrow(tenant, disputed.escrow_id, key())
    with pytest.raises(ApiError) as blocked:
        await ledger.release_escrow(tenant, disputed.escrow_id, key())
    assert blocked.value.reason == Reason.INVALID_STATE
    automatic = await ledger.create_escrow(
        tenant, EscrowCommand(buyer, seller, pool, CURRENCY, 3_000, fees, 30, later_ms(1.0)), key()
    )
    for _ in range(wait_steps_max):
        if (await ledger.get_escrow(tenant, automatic.escrow_id)).state is EscrowState.RELEASED:
            break
        await asyncio.sleep(0.1)
    assert (await ledger.get_escrow(tenant, automatic.escrow_id)).state is EscrowState.RELEASED
    assert (await ledger.get_escrow(tenant, disputed.escrow_id)).state is EscrowState.DISPUTED
    done = await ledger.refund_escrow(tenant, disputed.escrow_id, 0, key())
    assert done.state is EscrowState.REFUNDED
    for _ in range(wait_steps_max):
        if await balance(ledger, tenant, seller) == 2_970:
            break
        await asyncio.sleep(0.1)
    assert [await balance(ledger, tenant, a) for a in (buyer, seller, fees, pool)] == [7_000, 2_970, 30, 0]
    await ledger.stop()


async def test_closed_holds_and_escrows_live_in_storage_only(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """An owner keeps open holds and escrows in memory and loads only those when it acquires a shard;
    closed (and refused) ones it reads when asked for them, and retries of their requests still get
    the same answers, in the process that closed them and in the next one."""
    first = Ledger(backend, settings)
    buyer, seller, fees, pool = await _escrow_accounts(first, tenant)
    hold = HoldCommand(buyer, seller, CURRENCY, 100, later_ms(3600))
    held = await first.create_hold(tenant, hold, key("hold-open"))
    voided = await first.create_hold(tenant, hold, key("hold-voided"))
    await first.void_hold(tenant, voided.hold_id, key("void"))
    with pytest.raises(ApiError) as refused:
        await first.create_hold(
            tenant, HoldCommand(buyer, seller, CURRENCY, 10**9, later_ms(3600)), key("big")
        )
    escrow = EscrowCommand(buyer, seller, pool, CURRENCY, 500, fees, 10, later_ms(3600))
    opened = await first.create_escrow(tenant, escrow, key("escrow-open"))
    released = await first.create_escrow(tenant, escrow, key("escrow-released"))
    await first.release_escrow(tenant, released.escrow_id, key("release"))
    for ledger in (first, Ledger(backend, settings)):
        await ledger.get_account(tenant, buyer)
        await ledger.get_account(tenant, pool)
        buyer_shard, pool_shard = ledger_actor(ledger, tenant, buyer), ledger_actor(ledger, tenant, pool)
        assert set(buyer_shard.loaded.holds) == {held.hold_id}
        assert set(pool_shard.loaded.escrows) == {opened.escrow_id}
        assert (await ledger.get_hold(tenant, voided.hold_id)).state is HoldState.VOIDED
        assert (await ledger.void_hold(tenant, voided.hold_id, key("void"))).state is HoldState.VOIDED
        with pytest.raises(ApiError) as again:
            await ledger.create_hold(
                tenant, HoldCommand(buyer, seller, CURRENCY, 10**9, later_ms(3600)), key("big")
            )
        assert again.value.reason == refused.value.reason == Reason.INSUFFICIENT_FUNDS
        assert (await ledger.create_hold(tenant, hold, key("hold-voided"))).state is HoldState.VOIDED
        assert (
            await ledger.release_escrow(tenant, released.escrow_id, key("release"))
        ).state is EscrowState.RELEASED
        with pytest.raises(ApiError) as closed:
            await ledger.dispute_escrow(tenant, released.escrow_id, key())
        assert closed.value.reason == Reason.INVALID_STATE
        await ledger.stop()
    audit = Ledger(backend, settings)
    assert [await balance(audit, tenant, a) for a in (seller, fees)] == [490, 10]
    await audit.stop()


async def test_refunds_never_exceed_the_original_leg(ledger: Ledger, tenant: str) -> None:
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await open_account(ledger, tenant, merchant)
    await pay(ledger, tenant, bank, (buyer, 1_000))
    paid = await pay(ledger, tenant, buyer, (merchant, 800))
    await ledger.create_refund(tenant, paid.transfer_id, 0, 300, key("r1"))
    await ledger.create_refund(tenant, paid.transfer_id, 0, 300, key("r1"))
    await ledger.create_refund(tenant, paid.transfer_id, 0, 500, key("r2"))
    with pytest.raises(ApiError) as over:
        await ledger.create_refund(tenant, paid.transfer_id, 0, 1, key("r3"))
    assert over.value.reason == Reason.REFUND_EXCEEDS_ORIGINAL
    assert [await balance(ledger, tenant, a) for a in (buyer, merchant)] == [1_000, 0]
    await ledger.stop()


async def test_refunds_close_with_their_window_and_tallies_are_forgotten(
    backend: StorageBackend, tenant: str
) -> None:
    # The first refund must come inside the window also on a slow machine, the second after it.
    ledger = Ledger(backend, PaymentsSettings(shard_count=SHARDS, refund_window_s=2))
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    for account in (buyer, merchant):
        await open_account(ledger, tenant, account)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await pay(ledger, tenant, bank, (buyer, 1_000))
    paid = await pay(ledger, tenant, buyer, (merchant, 800))
    await ledger.create_refund(tenant, paid.transfer_id, 0, 300, key("r1"))
    merchant_shard = ledger_actor(ledger, tenant, merchant)
    tally_key = f"{paid.transfer_id}:0"
    assert tally_key in merchant_shard.loaded.tallies
    await asyncio.sleep(2.2)
    for _ in range(2):
        with pytest.raises(ApiError) as closed:
            await ledger.create_refund(tenant, paid.transfer_id, 0, 100, key("r2"))
        assert closed.value.reason == Reason.REFUND_WINDOW_CLOSED
    for _ in range(wait_steps_max):
        if tally_key not in merchant_shard.loaded.tallies:
            break
        await asyncio.sleep(0.1)
    assert tally_key not in merchant_shard.loaded.tallies
    assert [await balance(ledger, tenant, a) for a in (buyer, merchant)] == [500, 500]
    await ledger.stop()


async def test_a_refund_of_a_transfer_still_crediting_its_payee_is_retried_not_refused(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """While the original's credit is on its way the refund is UNAVAILABLE (retry), not a refusal: the
    same request, retried once the credit landed, refunds (found by the simulation, where the refusal
    and a later success answered one request)."""
    stalled = Ledger(backend, settings)
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    for account in (buyer, merchant):
        await open_account(stalled, tenant, account)
    await open_account(stalled, tenant, bank, allow_negative=True)
    await pay(stalled, tenant, bank, (buyer, 1_000))
    stalled.shards.deliveries.start = lambda sender, key, entry, fresh=False: None  # type: ignore[method-assign,misc]
    paid = await pay(stalled, tenant, buyer, (merchant, 800))
    with pytest.raises(ApiError) as pending:
        await stalled.create_refund(tenant, paid.transfer_id, 0, 300, key("r1"))
    assert (pending.value.code, pending.value.reason) == (ErrorCode.UNAVAILABLE, Reason.DELIVERY_PENDING)
    await stalled.stop()
    delivering = Ledger(backend, settings)
    refund = await delivering.create_refund(tenant, paid.transfer_id, 0, 300, key("r1"))
    assert refund.amount_minor == 300
    assert [await balance(delivering, tenant, a) for a in (buyer, merchant)] == [500, 500]
    await delivering.stop()


def ledger_actor(ledger: Ledger, tenant: str, account_id: str) -> Shard:
    return ledger.shards.actors[(tenant, shard_of(account_id, SHARDS))]


async def test_balance_as_of_a_past_time(ledger: Ledger, tenant: str) -> None:
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    before_ms = int(time.time() * 1000) - 1
    await pay(ledger, tenant, bank, (buyer, 100))
    await asyncio.sleep(0.05)
    between_ms = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await pay(ledger, tenant, bank, (buyer, 50))
    assert (await ledger.balance_at(tenant, buyer, before_ms)).ledger_minor == 0
    at = await ledger.balance_at(tenant, buyer, between_ms)
    assert (at.ledger_minor, at.entry_seq) == (100, 1)
    assert (await ledger.balance_at(tenant, buyer, int(time.time() * 1000))).ledger_minor == 150
    await ledger.stop()
