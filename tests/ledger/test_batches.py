"""The batch path (`payments.batch`, what BatchCreateTransfers and bulk uploads run) exactly once under lost
answers, on every backend: the ledger applies a batch but its caller never hears (every payer shard's
commit stored and its answer lost; then the whole answer lost on the way back), and the caller sends the
same request ids and bodies again until every item has a final outcome, then once more. Nothing is
applied twice, every retry reports the outcome the ledger committed (the transfer, or the same refusal),
the balances equal the tally of those outcomes, and reconciliation is clean. A failure prints the seed."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Final

import pytest
from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import Idempotency, TransferCommand
from jubao_server.payments.batch import Outcome, create_transfers
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import Leg, Transfer, TransferState
from jubao_server.payments.reconcile import reconcile
from jubao_server.payments.records import messages_of
from jubao_server.payments.tables import SHARDS as SHARD_TABLE
from jubao_server.payments.tables import TRANSFERS
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    Bound,
    Consistency,
    Key,
    PartitionRef,
    Row,
    RowQuery,
    StorageBackend,
)

from tests.ledger.conftest import SHARDS
from tests.ledger.support import (
    CURRENCY,
    CommitFailure,
    balance,
    completed,
    fail_next_commit,
    ids_in_distinct_shards,
    ids_in_shard,
    key,
    open_account,
    pay,
    settled,
)

CUSTOMERS: Final = 12
FUNDING_MINOR: Final = 1_000
ITEMS: Final = 300
AMOUNT_MAX_MINOR: Final = 400
ATTEMPTS_MAX: Final = 20
SETTLE_POLLS_MAX: Final = 100


def batch_of(rng: random.Random, customers: list[str]) -> list[tuple[TransferCommand, Idempotency]]:
    """Random transfers between customers; some overdraw their payer and are refused."""
    items = []
    for index in range(ITEMS):
        payer, payee = rng.sample(customers, 2)
        legs = (Leg(payer, payee, rng.randrange(1, AMOUNT_MAX_MINOR)),)
        items.append((TransferCommand(CURRENCY, legs, "batch"), Idempotency(f"b-{index}", repr(legs))))
    return items


def summary(outcome: Outcome) -> tuple[str, str]:
    """What a caller is told of an item: the transfer it names, or the refusal's reason."""
    if isinstance(outcome, Transfer):
        return ("transfer", outcome.transfer_id)
    if isinstance(outcome, ApiError):
        return (outcome.code.name, str(outcome.reason))
    return ("held elsewhere", outcome.address)


def final(outcome: Outcome) -> bool:
    return not (isinstance(outcome, ApiError) and outcome.code is ErrorCode.UNAVAILABLE)


async def resolved(
    ledger: Ledger, tenant: str, items: list[tuple[TransferCommand, Idempotency]], seed: int
) -> list[Outcome]:
    """Send the items whose outcome is still unknown again (same request ids and bodies) until none is."""
    outcomes = await create_transfers(ledger, tenant, items)
    for _ in range(ATTEMPTS_MAX):
        open_indexes = [i for i, outcome in enumerate(outcomes) if not final(outcome)]
        if not open_indexes:
            return outcomes
        again = await create_transfers(ledger, tenant, [items[i] for i in open_indexes])
        for index, outcome in zip(open_indexes, again, strict=True):
            outcomes[index] = outcome
    raise AssertionError(f"seed {seed}: outcomes still unknown after {ATTEMPTS_MAX} attempts")


async def test_a_batch_whose_answers_were_lost_is_applied_once(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    ledger = Ledger(backend, settings)
    customers = [f"c-{index}" for index in range(CUSTOMERS)]
    await open_account(ledger, tenant, "bank", allow_negative=True)
    for account_id in customers:
        await open_account(ledger, tenant, account_id)
        await pay(ledger, tenant, "bank", (account_id, FUNDING_MINOR))
    items = batch_of(rng, customers)
    for shard in range(SHARDS):
        fail_next_commit(backend, SHARD_TABLE.partition(tenant, shard), CommitFailure.ANSWER_LOST)
    first = await create_transfers(ledger, tenant, items)
    assert not all(final(outcome) for outcome in first), f"seed {seed}: a commit's answer was lost"
    outcomes = await resolved(ledger, tenant, items, seed)
    again = await create_transfers(ledger, tenant, items)
    told = [summary(outcome) for outcome in outcomes]
    assert [summary(outcome) for outcome in again] == told, f"seed {seed}"
    for before, after in zip(first, outcomes, strict=True):
        assert not final(before) or summary(before) == summary(after), f"seed {seed}"
    refused = {summary(o) for o in outcomes if isinstance(o, ApiError)}
    assert refused <= {("FAILED_PRECONDITION", "INSUFFICIENT_FUNDS")}, f"seed {seed}: {refused}"
    expected = Counter({account_id: FUNDING_MINOR for account_id in customers})
    for (command, _), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, Transfer):
            (leg,) = command.legs
            expected[leg.debit_account_id] -= leg.amount_minor
            expected[leg.credit_account_id] += leg.amount_minor
    for _ in range(SETTLE_POLLS_MAX):
        balances = {a: await balance(ledger, tenant, a) for a in customers}
        if balances == dict(expected):
            break
        await asyncio.sleep(0.05)
    assert balances == dict(expected), f"seed {seed}"
    report = await ledger.reconcile(tenant)
    assert report.clean, f"seed {seed}: {report}"
    await ledger.stop()


async def test_a_batch_owes_each_other_shard_one_message(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """What a payer shard's batch owes other shards is one outbox entry, keyed by its first transfer,
    whose credits for a shard travel as one message under one marker; an item whose payee refuses the
    credit (checked before the debit) is refused alone and owes nothing. In flight, the reconciliation
    counts them; a ledger that acquires the payer's shard afresh (as after a crash) delivers them:
    every transfer completed, each credit landed once, and once more when the delivery runs again."""
    payer, first, second = ids_in_distinct_shards("acct", SHARDS, 3)
    payees = ids_in_shard("first", shard_of(first, SHARDS), 3, SHARDS) + ids_in_shard(
        "second", shard_of(second, SHARDS), 3, SHARDS
    )
    stalled = Ledger(backend, settings)
    await open_account(stalled, tenant, payer, allow_negative=True)
    for payee in payees:
        await open_account(stalled, tenant, payee)
    frozen = ids_in_shard("frozen", shard_of(first, SHARDS), 1, SHARDS)[0]
    await open_account(stalled, tenant, frozen, credits_frozen=True)
    stalled.shards.deliveries.start = lambda sender, key, entry, fresh=False: None  # type: ignore[method-assign,misc]
    items = [
        (TransferCommand(CURRENCY, (Leg(payer, payee, 10 + index),), "batch"), key(f"b-{index}"))
        for index, payee in enumerate(payees * 2)
    ]
    refused = (TransferCommand(CURRENCY, (Leg(payer, frozen, 5),), "batch"), key("b-frozen"))
    *outcomes, refusal = await create_transfers(stalled, tenant, [*items, refused])
    assert summary(refusal) == ("FAILED_PRECONDITION", "ACCOUNT_FROZEN")
    transfers = [outcome for outcome in outcomes if isinstance(outcome, Transfer)]
    assert [t.state for t in transfers] == [TransferState.DEBITED] * len(items)
    payer_shard = stalled.shards.actors[(tenant, shard_of(payer, SHARDS))]
    ((entry_key, entry),) = payer_shard.outbox.items()
    assert entry_key == transfers[0].transfer_id
    assert sorted(len(message.parts()) for message in messages_of(entry_key, entry)) == [6, 6]
    await stalled.stop()
    owed_minor = sum(leg.amount_minor for command, _ in items for leg in command.legs)
    assert (await reconcile(backend, tenant, SYSTEM_CLOCK)).in_flight_minor == owed_minor
    delivering = Ledger(backend, settings)
    await delivering.get_account(tenant, payer)
    for transfer in transfers:
        delivered = await completed(
            delivering, tenant, transfer.transfer_id, polls_max=SETTLE_POLLS_MAX, poll_s=0.05
        )
        assert delivered.state is TransferState.COMPLETED
    expected = Counter[str]()
    for command, _ in items:
        expected[command.legs[0].credit_account_id] += command.legs[0].amount_minor
    assert {payee: await balance(delivering, tenant, payee) for payee in payees} == dict(expected)
    markers = [await credit_markers(backend, tenant, shard_of(p, SHARDS)) for p in (first, second)]
    assert markers == [[f"{entry_key}@{shard_of(p, SHARDS)}"] for p in (first, second)]
    sender = delivering.shards.actors[(tenant, shard_of(payer, SHARDS))]
    assert await settled(sender, entry_key, polls_max=SETTLE_POLLS_MAX)
    deliveries = delivering.shards.deliveries
    deliveries.start(sender, entry_key, entry)
    assert await deliveries.landed([transfers[-1].transfer_id], 5.0) == [True]
    assert {payee: await balance(delivering, tenant, payee) for payee in payees} == dict(expected)
    report = await delivering.reconcile(tenant)
    assert report.clean and report.in_flight_minor == 0, report
    await delivering.stop()


async def credit_markers(backend: StorageBackend, tenant: str, shard: int) -> list[str]:
    """The keys of the apply-once markers a shard stored for the messages it applied."""
    query = RowQuery(
        SHARD_TABLE.partition(tenant, shard),
        lower=Bound(("credit",), inclusive=True),
        upper=Bound(("credit",), inclusive=True),
        limit=100,
    )
    return [row.as_text("row_key") for row in (await backend.read_page(query)).rows]


async def test_items_whose_credits_are_still_in_flight_are_answered_without_a_read(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the bounded wait for a batch's credits ends first (as on a loaded server), its items are
    answered debited as their payer's shard committed them, credits in flight, with no read of each
    transfer: a read each cost such a batch a thousand. Their credits land afterwards."""
    monkeypatch.setattr(limits, "ledger_completion_wait_s", 0)
    payer, payee_shard = ids_in_distinct_shards("acct", SHARDS, 2)
    payees = ids_in_shard("payee", shard_of(payee_shard, SHARDS), 4, SHARDS)
    ledger = Ledger(backend, settings)
    await open_account(ledger, tenant, payer, allow_negative=True)
    for payee in payees:
        await open_account(ledger, tenant, payee)
    items = [
        (TransferCommand(CURRENCY, (Leg(payer, payee, 10 + index),), "batch"), key(f"f-{index}"))
        for index, payee in enumerate(payees * 3)
    ]
    reads: Counter[str] = Counter()
    read_row = backend.read_row

    async def counted(
        partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        reads[partition.table.name] += 1
        return await read_row(partition, clustering, consistency)

    monkeypatch.setattr(backend, "read_row", counted)
    outcomes = await create_transfers(ledger, tenant, items)
    assert [o.state for o in outcomes if isinstance(o, Transfer)] == [TransferState.DEBITED] * len(items)
    assert reads[TRANSFERS.name] == 0, reads
    for outcome in outcomes:
        assert isinstance(outcome, Transfer)
        landed = await completed(ledger, tenant, outcome.transfer_id, polls_max=SETTLE_POLLS_MAX, poll_s=0.05)
        assert landed.state is TransferState.COMPLETED
    assert (await ledger.reconcile(tenant)).clean
    await ledger.stop()
