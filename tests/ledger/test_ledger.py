"""The ledger on every backend: transfers, statements, idempotency, rejections, recovery, fencing."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable

import pytest
from jubao.errors import Reason
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import EntryQuery, HoldCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import (
    Account,
    AccountChange,
    AccountKind,
    AccountPolicy,
    EntryKind,
    Leg,
    Transfer,
    TransferState,
)
from jubao_server.payments.records import ENCODER, OutboxEntry, OwedTransfer, RemoteCredit, TransferRecord
from jubao_server.payments.state import AccountState
from jubao_server.payments.tables import CREDIT_MARKERS, TRANSFERS
from jubao_server.payments.tables import SHARDS as SHARD_TABLE
from jubao_server.shards.actor import OUTBOX
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    INT64_MAX,
    Batch,
    Delete,
    Put,
    StorageBackend,
)

from tests.ledger.conftest import SHARDS
from tests.ledger.support import (
    CURRENCY,
    CommitFailure,
    balance,
    completed,
    cut_off_shard,
    fail_next_commit,
    ids_in_distinct_shards,
    ids_in_shard,
    key,
    open_account,
    pay,
    settled,
    total,
    transfer_item,
)

wait_steps_max = 40


@pytest.fixture
async def ledger(backend: StorageBackend, settings: PaymentsSettings) -> Ledger:
    return Ledger(backend, settings)


async def test_cross_shard_split_payment_conserves_money(ledger: Ledger, tenant: str) -> None:
    bank, buyer, merchant, fees = ids_in_distinct_shards("acct", SHARDS, 4)
    await open_account(ledger, tenant, bank, allow_negative=True)
    for account in (buyer, merchant, fees):
        await open_account(ledger, tenant, account)
    await pay(ledger, tenant, bank, (buyer, 10_000))
    split = await pay(ledger, tenant, buyer, (merchant, 9_700), (fees, 300))
    assert split.state is TransferState.COMPLETED
    assert [await balance(ledger, tenant, a) for a in (bank, buyer, merchant, fees)] == [
        -10_000,
        0,
        9_700,
        300,
    ]
    assert await total(ledger, tenant) == 0
    fetched = await ledger.get_transfer(tenant, split.transfer_id)
    assert fetched.legs == split.legs and fetched.state is TransferState.COMPLETED
    entries, _ = await ledger.list_entries(tenant, EntryQuery(buyer, None, None, None, 10))
    assert [(e.kind, e.amount_minor, e.balance_after_minor) for e in entries] == [
        (EntryKind.CREDIT, 10_000, 10_000),
        (EntryKind.DEBIT, -9_700, 300),
        (EntryKind.DEBIT, -300, 0),
    ]
    merchant_entries, _ = await ledger.list_entries(tenant, EntryQuery(merchant, None, None, None, 10))
    assert [e.balance_after_minor for e in merchant_entries] == [9_700]
    await ledger.stop()


async def test_a_transfer_row_is_written_once_and_read_completed_once_its_credits_landed(
    ledger: Ledger, backend: StorageBackend, tenant: str
) -> None:
    """A cross-shard transfer's row is written when its payer's shard commits it, debited and naming the
    outbox entry owing its credits; settling the entry writes no row. A read sees the transfer completed
    once every message of the entry left its marker in its shard (the caller is answered then, before
    the entry settles), or once the entry is gone."""
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    paid = await pay(ledger, tenant, bank, (buyer, 500))
    assert paid.state is TransferState.COMPLETED
    row = await backend.read_row(TRANSFERS.partition(tenant, paid.transfer_id))
    assert row is not None and row["state"] == TransferState.DEBITED.value
    payer_shard, buyer_shard = shard_of(bank, SHARDS), shard_of(buyer, SHARDS)
    assert (row["owed_shard"], row["owed_entry"]) == (payer_shard, paid.transfer_id)
    assert (await ledger.get_transfer(tenant, paid.transfer_id)).state is TransferState.COMPLETED
    debited = TransferRecord.of(dataclasses.replace(paid, state=TransferState.DEBITED))
    credit = RemoteCredit(leg_index=0, account_id=buyer, amount_minor=500, shard=buyer_shard)
    entry = OutboxEntry(transfers=(OwedTransfer(debited, (credit,)),), named=True)
    not_settled = Put((OUTBOX, paid.transfer_id), {"record": ENCODER.encode(entry)})
    await backend.write(Batch(SHARD_TABLE.partition(tenant, payer_shard), (not_settled,)))
    assert (await ledger.get_transfer(tenant, paid.transfer_id)).state is TransferState.COMPLETED
    not_landed = Delete((CREDIT_MARKERS, f"{paid.transfer_id}@{buyer_shard}"))
    await backend.write(Batch(SHARD_TABLE.partition(tenant, buyer_shard), deletes=(not_landed,)))
    assert (await ledger.get_transfer(tenant, paid.transfer_id)).state is TransferState.DEBITED
    await ledger.stop()


async def test_a_settle_rides_the_payer_shards_next_commit(backend: StorageBackend, tenant: str) -> None:
    """A cross-shard transfer's caller is answered once its credit landed; the payer's shard settles the
    outbox entry with the next command it commits, in the same group, not in a commit of its own (its
    upkeep tick, here 10 s away, does it when no command comes). A delivery of the entry started again
    meanwhile applies nothing, and who waits for it wakes when the entry settles."""
    quiet = PaymentsSettings(shard_count=SHARDS, shard_lease_ms=60_000, inbox_poll_ms=10_000)
    ledger = Ledger(backend, quiet)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    paid = await pay(ledger, tenant, bank, (buyer, 500))
    assert paid.state is TransferState.COMPLETED
    payer = ledger.shards.actors[(tenant, shard_of(bank, SHARDS))]
    assert paid.transfer_id in payer.outbox
    assert (await ledger.get_transfer(tenant, paid.transfer_id)).state is TransferState.COMPLETED
    deliveries = ledger.shards.deliveries
    deliveries.start(payer, paid.transfer_id, payer.outbox[paid.transfer_id])
    again = asyncio.create_task(deliveries.landed([paid.transfer_id], 5.0))
    before = payer.last_seq
    (neighbour,) = ids_in_shard("neighbour", shard_of(bank, SHARDS), 1, SHARDS)
    await open_account(ledger, tenant, neighbour)
    assert paid.transfer_id not in payer.outbox
    assert payer.last_seq == before + 2, "the account's record and the settle's, in one group"
    assert await again == [True], "who waits for a delivery started again wakes when the entry settles"
    assert await balance(ledger, tenant, buyer) == 500
    await ledger.stop()


async def test_a_settle_comes_within_an_upkeep_tick_and_before_a_stop(
    ledger: Ledger, backend: StorageBackend, tenant: str
) -> None:
    """With no command coming, the payer's shard settles at its next upkeep tick (200 ms here); an owner
    that stops commits the settles still waiting first, so the outbox it leaves in storage is empty."""
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    payer = ledger.shards.actors[(tenant, shard_of(bank, SHARDS))]
    ticked = await pay(ledger, tenant, bank, (buyer, 500))
    assert await settled(payer, ticked.transfer_id, polls_max=wait_steps_max)
    stopped = await pay(ledger, tenant, bank, (buyer, 700))
    assert stopped.transfer_id in payer.outbox
    await ledger.stop()
    outbox = SHARD_TABLE.partition(tenant, shard_of(bank, SHARDS))
    assert await backend.read_row(outbox, (OUTBOX, stopped.transfer_id)) is None


async def test_a_request_id_is_applied_once(ledger: Ledger, tenant: str) -> None:
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    first = await pay(ledger, tenant, bank, (buyer, 500), request_id="pay-1")
    retries = await asyncio.gather(
        *(pay(ledger, tenant, bank, (buyer, 500), request_id="pay-1") for _ in range(5))
    )
    assert all(r.transfer_id == first.transfer_id for r in retries)
    assert await balance(ledger, tenant, buyer) == 500
    with pytest.raises(ApiError) as reused:
        await pay(ledger, tenant, bank, (buyer, 501), request_id="pay-1")
    assert reused.value.code == ErrorCode.ALREADY_EXISTS and reused.value.reason == Reason.REQUEST_ID_REUSED
    await ledger.stop()


async def test_a_request_id_reused_for_another_payer_is_refused_even_at_once(
    ledger: Ledger, tenant: str
) -> None:
    """Two requests with one id naming different payers, sent together: one is applied, the other is
    REQUEST_ID_REUSED (on SQLite each claim rides its payer shard's commit, and the second finds the
    first's), and a request sent with them under its own id is applied as usual."""
    bank, other, buyer = ids_in_distinct_shards("acct", SHARDS, 3)
    for account in (bank, other):
        await open_account(ledger, tenant, account, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    answers = await asyncio.gather(
        pay(ledger, tenant, bank, (buyer, 100), request_id="shared"),
        pay(ledger, tenant, other, (buyer, 200), request_id="shared"),
        pay(ledger, tenant, bank, (buyer, 400), request_id="own"),
        return_exceptions=True,
    )
    applied = [a for a in answers[:2] if isinstance(a, Transfer)]
    refused = [a for a in answers[:2] if isinstance(a, ApiError)]
    assert len(applied) == len(refused) == 1, answers
    assert refused[0].reason == Reason.REQUEST_ID_REUSED
    assert isinstance(answers[2], Transfer) and answers[2].state is TransferState.COMPLETED
    moved = applied[0].legs[0].amount_minor
    with pytest.raises(ApiError) as again:
        await pay(ledger, tenant, other if moved == 100 else bank, (buyer, 300), request_id="shared")
    assert again.value.reason == Reason.REQUEST_ID_REUSED
    assert await balance(ledger, tenant, buyer) == moved + 400
    await ledger.stop()


@pytest.mark.parametrize("settled_before", [True, False])
async def test_a_retry_to_a_new_owner_is_answered_from_the_journal(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str, settled_before: bool
) -> None:
    """A request committed by an earlier owner of its payer's shard, retried at a new owner (which does
    not remember it), is answered with its transfer and moves nothing again; also when the earlier owner
    left its outbox entry unsettled, so that the new owner settles it in the retry's group."""
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    first = Ledger(backend, settings)
    await open_account(first, tenant, bank, allow_negative=True)
    await open_account(first, tenant, buyer)
    paid = await pay(first, tenant, bank, (buyer, 500), request_id="pay-1")
    await first.stop()
    if not settled_before:
        debited = TransferRecord.of(dataclasses.replace(paid, state=TransferState.DEBITED))
        credit = RemoteCredit(0, buyer, 500, shard_of(buyer, SHARDS))
        entry = OutboxEntry(transfers=(OwedTransfer(debited, (credit,)),), named=True)
        not_settled = Put((OUTBOX, paid.transfer_id), {"record": ENCODER.encode(entry)})
        await backend.write(Batch(SHARD_TABLE.partition(tenant, shard_of(bank, SHARDS)), (not_settled,)))
    second = Ledger(backend, settings)
    payer = await second.shards.actor(tenant, shard_of(bank, SHARDS))
    if not settled_before:
        # The new owner delivers the entry again; its settle then waits to ride the next group: the retry's.
        assert await second.shards.deliveries.landed([paid.transfer_id], 5.0) == [True]
        await asyncio.sleep(0)
        assert paid.transfer_id in payer.outbox
    retried = await pay(second, tenant, bank, (buyer, 500), request_id="pay-1")
    assert (retried.transfer_id, retried.state) == (paid.transfer_id, TransferState.COMPLETED)
    assert await balance(second, tenant, buyer) == 500
    assert await balance(second, tenant, bank) == -500
    await second.stop()


async def test_rejections_change_nothing(ledger: Ledger, tenant: str) -> None:
    bank, payer, payee = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(
        ledger, tenant, payer, single_payment_limit_minor=1_000, daily_outflow_limit_minor=1_500
    )
    await open_account(ledger, tenant, payee)
    await pay(ledger, tenant, bank, (payer, 5_000))
    cases = [
        ((payee, 6_000), Reason.LIMIT_EXCEEDED),
        ((payee, 1_001), Reason.LIMIT_EXCEEDED),
        (("nobody", 10), Reason.ACCOUNT_NOT_FOUND),
    ]
    await pay(ledger, tenant, payer, (payee, 1_000))
    cases.append(((payee, 600), Reason.LIMIT_EXCEEDED))
    for credit, reason in cases:
        with pytest.raises(ApiError) as rejected:
            await pay(ledger, tenant, payer, credit)
        assert rejected.value.reason == reason
    change = AccountChange(policy=AccountPolicy(debits_frozen=True))
    freeze = key("freeze-1")
    await ledger.update_account(tenant, payer, change, freeze)
    with pytest.raises(ApiError) as frozen:
        await pay(ledger, tenant, payer, (payee, 10))
    assert frozen.value.reason == Reason.ACCOUNT_FROZEN
    await ledger.update_account(tenant, payer, AccountChange(policy=AccountPolicy()), key())
    replayed = await ledger.update_account(tenant, payer, change, freeze)
    assert not replayed.account.policy.debits_frozen
    with pytest.raises(ApiError) as broke:
        await pay(ledger, tenant, payer, (payee, 4_001))
    assert broke.value.reason == Reason.INSUFFICIENT_FUNDS
    assert [await balance(ledger, tenant, a) for a in (payer, payee)] == [4_000, 1_000]
    assert await total(ledger, tenant) == 0
    await ledger.stop()


async def test_state_survives_a_restart(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    first = Ledger(backend, settings)
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(first, tenant, bank, allow_negative=True)
    await open_account(first, tenant, buyer)
    await open_account(first, tenant, merchant)
    await pay(first, tenant, bank, (buyer, 1_000))
    paid = await pay(first, tenant, buyer, (merchant, 400), request_id="order-7")
    await first.stop()
    second = Ledger(backend, settings)
    assert [await balance(second, tenant, a) for a in (bank, buyer, merchant)] == [-1_000, 600, 400]
    again = await pay(second, tenant, buyer, (merchant, 400), request_id="order-7")
    assert again.transfer_id == paid.transfer_id and await balance(second, tenant, merchant) == 400
    await pay(second, tenant, buyer, (merchant, 100))
    entries, _ = await second.list_entries(tenant, EntryQuery(merchant, None, None, None, 10))
    assert [e.balance_after_minor for e in entries] == [400, 500]
    await second.stop()


async def test_a_leased_shard_is_not_taken_and_a_stale_owner_is_fenced(
    backend: StorageBackend, tenant: str
) -> None:
    settings = PaymentsSettings(shard_count=SHARDS, shard_lease_ms=300)
    old, new = Ledger(backend, settings), Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(old, tenant, bank, allow_negative=True)
    await open_account(old, tenant, buyer)
    await pay(old, tenant, bank, (buyer, 100))
    assert await balance(new, tenant, buyer) == 100
    with pytest.raises(ApiError) as held:
        await pay(new, tenant, buyer, (bank, 50))
    assert (held.value.code, held.value.reason) == (ErrorCode.UNAVAILABLE, Reason.SHARD_MOVED)
    paused = list(old.shards.actors.values())
    for actor in paused:
        actor.pause_upkeep()
    await asyncio.sleep(0.4)
    await pay(new, tenant, buyer, (bank, 50))
    for actor in paused:
        actor.lease_until_ms = 2**62
    with pytest.raises(ApiError) as fenced:
        await pay(old, tenant, bank, (buyer, 1))
    assert fenced.value.code == ErrorCode.UNAVAILABLE
    await old.stop()
    await new.stop()
    audit = Ledger(backend, settings)
    assert [await balance(audit, tenant, a) for a in (bank, buyer)] == [-50, 50]
    assert await total(audit, tenant) == 0
    await audit.stop()


async def test_concurrent_random_transfers_conserve_money(ledger: Ledger, tenant: str) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    accounts = [f"c{index}" for index in range(12)]
    await open_account(ledger, tenant, "bank", allow_negative=True)
    for account in accounts:
        await open_account(ledger, tenant, account)
        await pay(ledger, tenant, "bank", (account, 1_000))

    async def attempt(payer: str, payee: str, amount: int) -> int:
        try:
            await pay(ledger, tenant, payer, (payee, amount))
        except ApiError as error:
            assert error.reason == Reason.INSUFFICIENT_FUNDS, f"seed {seed}: {error}"
            return 0
        return amount

    pairs = [rng.sample(accounts, 2) for _ in range(300)]
    moved = await asyncio.gather(*(attempt(a, b, rng.randrange(1, 400)) for a, b in pairs))
    balances = {a: await balance(ledger, tenant, a) for a in accounts}
    assert all(value >= 0 for value in balances.values()), f"seed {seed}: {balances}"
    assert sum(balances.values()) == 12_000 and await total(ledger, tenant) == 0, f"seed {seed}"
    assert sum(moved) > 0
    for account in accounts:
        entries, _ = await ledger.list_entries(tenant, EntryQuery(account, None, None, None, 500))
        assert entries[-1].balance_after_minor == balances[account], f"seed {seed}"
        assert sum(e.amount_minor for e in entries) == balances[account], f"seed {seed}"
    await ledger.stop()


async def test_a_stopped_owner_refuses_commands_instead_of_queueing_them(ledger: Ledger, tenant: str) -> None:
    """An owner replaced while a caller still holds it (its lease lapsed, say) must answer that caller."""
    await open_account(ledger, tenant, "bank", allow_negative=True)
    (owner,) = ledger.shards.actors.values()
    await owner.stop()
    async with asyncio.timeout(5):
        with pytest.raises(ApiError) as refused:
            await owner.settle("tr_none")
    assert refused.value.code == ErrorCode.UNAVAILABLE
    await ledger.stop()


async def test_an_owner_whose_commit_failed_takes_its_shard_back(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A failed commit loses the shard; the next call takes it back. When the failed batch was not
    stored, the owner's state is still the stored one and is kept; when it was stored and its answer
    lost, the shard is read again; when its journal failed, the owner took the commit into its state,
    keeps it, and writes the journal before the shard serves again."""
    ledger = Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await pay(ledger, tenant, bank, (buyer, 100))
    payer_shard = (tenant, shard_of(bank, SHARDS))
    for failure in CommitFailure:
        owner = ledger.shards.actors[payer_shard]
        fail_next_commit(backend, owner.partition, failure)
        with pytest.raises(ApiError) as lost:
            await pay(ledger, tenant, bank, (buyer, 10), request_id=f"order-{failure}")
        assert lost.value.code == ErrorCode.UNAVAILABLE
        await pay(ledger, tenant, bank, (buyer, 10), request_id=f"order-{failure}")
        taken = ledger.shards.actors[payer_shard]
        assert taken is not owner
        assert (taken.loaded is owner.loaded) is (failure is not CommitFailure.ANSWER_LOST)
    entries, _ = await ledger.list_entries(tenant, EntryQuery(bank, None, None, None, 10))
    assert [e.balance_after_minor for e in entries] == [-100, -110, -120, -130]
    for _ in range(wait_steps_max):
        if await balance(ledger, tenant, buyer) == 130:
            break
        await asyncio.sleep(0.05)
    assert await balance(ledger, tenant, buyer) == 130 and await total(ledger, tenant) == 0
    await ledger.stop()


async def test_payees_in_a_shard_that_cannot_be_read_answer_unavailable_and_move_nothing(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A payment whose payees live in two other shards reads both shards at once. When one of them cannot
    be read, the payment is answered UNAVAILABLE (STORAGE_UNAVAILABLE: retry with the same request id) and
    moves nothing, on the unary and the batch path alike; in the batch, the items that do not pay into
    that shard go through. (The simulation on Cassandra, seed 4128361516, found both paths answering
    INTERNAL: the reads' task group wrapped the storage error.) Once the shard answers, the same request
    ids pay once."""
    bank, buyer, near, far = ids_in_distinct_shards("acct", SHARDS, 4)
    opener = Ledger(backend, settings)
    await open_account(opener, tenant, bank, allow_negative=True)
    for account in (buyer, near, far):
        await open_account(opener, tenant, account)
    await pay(opener, tenant, bank, (buyer, 1_000))
    await opener.stop()
    # A process that has not loaded the payee shards: it reads them from storage.
    ledger = Ledger(backend, settings)
    split = transfer_item(buyer, (near, 100), (far, 200), request_id="split-1")
    batch = [
        transfer_item(buyer, (near, 30), (far, 60), request_id="split-2"),
        transfer_item(buyer, (near, 5)),
    ]
    restore = cut_off_shard(backend, tenant, shard_of(far, SHARDS))
    with pytest.raises(ApiError) as unary:
        await ledger.create_transfer(tenant, *split)
    outcomes = await ledger.create_transfers(tenant, batch)
    restore()
    refusals = [unary.value, outcomes[0]]
    assert [(r.code, r.reason) for r in refusals if isinstance(r, ApiError)] == [
        (ErrorCode.UNAVAILABLE, Reason.STORAGE_UNAVAILABLE)
    ] * 2
    assert isinstance(outcomes[1], Transfer)
    assert [await balance(ledger, tenant, a) for a in (buyer, near, far)] == [995, 5, 0]
    await ledger.create_transfer(tenant, *split)
    retried = [t for t in await ledger.create_transfers(tenant, batch) if isinstance(t, Transfer)]
    assert len(retried) == len(batch)
    for paid in retried:
        await completed(ledger, tenant, paid.transfer_id, polls_max=wait_steps_max, poll_s=0.05)
    assert [await balance(ledger, tenant, a) for a in (buyer, near, far)] == [605, 135, 260]
    assert await total(ledger, tenant) == 0
    await ledger.stop()


async def test_balances_never_leave_int64(ledger: Ledger, tenant: str) -> None:
    """A posting that would take a ledger, held or available balance past int64 is refused with its own
    reason (not a payer's LIMIT_EXCEEDED or INSUFFICIENT_FUNDS), and changes nothing."""
    source, spare, payee, other = ids_in_distinct_shards("acct", SHARDS, 4)
    for settlement in (source, spare):
        await open_account(ledger, tenant, settlement, allow_negative=True)
    await open_account(ledger, tenant, payee)
    await open_account(ledger, tenant, other)
    await pay(ledger, tenant, source, (payee, INT64_MAX))

    async def refused(work: Awaitable[object]) -> None:
        with pytest.raises(ApiError) as caught:
            await work
        assert (caught.value.code, caught.value.reason) == (
            ErrorCode.FAILED_PRECONDITION,
            Reason.BALANCE_OVERFLOW,
        )

    await refused(pay(ledger, tenant, spare, (payee, 1)))
    await refused(pay(ledger, tenant, source, (other, 2)))
    expire_time_ms = ledger.clock.wall_ms() + 3_600_000
    await ledger.create_hold(tenant, HoldCommand(spare, other, CURRENCY, INT64_MAX, expire_time_ms), key())
    await refused(ledger.create_hold(tenant, HoldCommand(spare, other, CURRENCY, 1, expire_time_ms), key()))
    assert [await balance(ledger, tenant, a) for a in (source, spare, payee, other)] == [
        -INT64_MAX,
        0,
        INT64_MAX,
        0,
    ]
    assert (await ledger.get_account(tenant, spare)).balance.held_minor == INT64_MAX
    assert await total(ledger, tenant) == 0


def test_the_hand_written_copies_keep_every_field() -> None:
    """`AccountState.copy`, `Account.updated_at` and `Transfer.with_state` spell their fields out (for
    speed): a field added to one of them must be added there too, which this catches."""
    account = Account("acct", "CNY", AccountKind.CUSTOMER, AccountPolicy(), "name", 1, 2, 3)
    numbers = {f.name: 10 + i for i, f in enumerate(dataclasses.fields(AccountState)) if f.type == "int"}
    state = AccountState(account, open_request_id="request", **numbers)
    assert len(numbers) + 2 == len(dataclasses.fields(AccountState))
    assert state.copy() == dataclasses.replace(state)
    assert state.copy() is not state
    assert account.updated_at(7) == dataclasses.replace(account, update_time_ms=7)
    transfer = Transfer("t", "r", "CNY", (Leg("a", "b", 1),), "memo", TransferState.DEBITED, 5, None)
    settled = transfer.with_state(TransferState.COMPLETED, 9)
    assert settled == dataclasses.replace(transfer, state=TransferState.COMPLETED, create_time_ms=9)
