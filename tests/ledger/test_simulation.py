"""The ledger simulation (tests/ledger/simulation.py) on every backend, and the bugs it found, each as a
minimal test."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from jubao.errors import Reason
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.payments.api import EscrowCommand, HoldCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.ledger import Ledger, Shard, transfer_id_of
from jubao_server.payments.model import (
    AccountKind,
    AccountPolicy,
    EscrowState,
    HoldState,
    OpenAccountCommand,
    TransferState,
)
from jubao_server.payments.reconcile import DiscrepancyKind, reconcile
from jubao_server.payments.tables import SHARDS as SHARDS_TABLE
from jubao_server.payments.tables import TRANSFERS
from jubao_server.shards.node import RANDOM_IDS
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import (
    Batch,
    Consistency,
    Key,
    PartitionRef,
    Put,
    Row,
    StorageBackend,
    Value,
)

from tests.backends import SHARED_BACKENDS, open_test_backend
from tests.ledger.conftest import SHARDS
from tests.ledger.simulation import (
    VIRTUAL_OPS_VARIABLE,
    replay_ops,
    run_on_simulated_time,
    seed_and_ops,
    simulate,
)
from tests.ledger.support import CURRENCY, balance, completed, ids_in_distinct_shards, key, open_account, pay
from tests.sim.faults import FaultPlan


@pytest.fixture(params=SHARED_BACKENDS)
async def faulty(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StorageBackend, FaultPlan]]:
    """A migrated backend and the fault plan it obeys."""
    faults = FaultPlan()
    opened = await open_test_backend(request.param, tmp_path, faults)
    try:
        await migrate(opened)
        yield opened, faults
    finally:
        await opened.close()


async def test_simulation(
    faulty: tuple[StorageBackend, FaultPlan], settings: PaymentsSettings, tenant: str
) -> None:
    """On SQLite and Cassandra, on the real clock."""
    backend, faults = faulty
    seed, ops = seed_and_ops(os.environ)
    result = await simulate(
        backend, faults, settings, tenant, seed=seed, ops=ops, clock=SYSTEM_CLOCK, ids=RANDOM_IDS
    )
    print(result.describe())
    assert not result.problems, result.describe()


def test_simulation_on_simulated_time(settings: PaymentsSettings) -> None:
    """On the memory backend, on simulated time (`make simulate` runs it at length)."""
    seed, ops = seed_and_ops(os.environ, VIRTUAL_OPS_VARIABLE)
    result = run_on_simulated_time(seed, ops, settings)
    print(result.describe())
    assert not result.problems, result.describe()


def test_the_same_seed_replays_exactly(settings: PaymentsSettings) -> None:
    """Three runs of one seed on simulated time: the same trace (every answer, refusal, unknown outcome
    and fault, and when it happened), so a failure found by a seed is found again by it."""
    seed, _ = seed_and_ops(os.environ)
    results = [run_on_simulated_time(seed, replay_ops, settings) for _ in range(3)]
    print("\n".join(result.describe() for result in results))
    assert not results[0].problems, results[0].describe()
    assert len({result.trace_hash for result in results}) == 1, [r.trace_hash for r in results]


wait_steps_max = 40
wait_step_s = 0.05
due_later_s = 3600
# The lease of a holder paused by `take_shard` (`long_lease`): longer than any test here.
holder_lease_ms = 600_000


async def buyer_and_seller(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> tuple[Ledger, str, str, str]:
    """A process with a funded buyer, a seller and an escrow pool, each in its own shard."""
    ledger = Ledger(backend, settings)
    bank, buyer, seller, pool = ids_in_distinct_shards("acct", SHARDS, 4)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await open_account(ledger, tenant, seller)
    escrow_pool = OpenAccountCommand(pool, CURRENCY, AccountKind.ESCROW, AccountPolicy(), pool)
    await ledger.open_account(tenant, escrow_pool, key())
    await pay(ledger, tenant, bank, (buyer, 1_000))
    return ledger, buyer, seller, pool


async def take_shard(backend: StorageBackend, settings: PaymentsSettings, tenant: str, account: str) -> None:
    """The holder of the account's shard is paused past its lease (its lease is ended in storage, while
    it still believes it holds it) and another process takes the shard: the holder's next commit there
    fails."""
    shard = shard_of(account, SHARDS)
    await backend.write(Batch(SHARDS_TABLE.partition(tenant, shard), static_values={"lease_until_ms": 0}))
    taker = Ledger(backend, settings)
    await taker.shards.actor(tenant, shard)
    await taker.stop()


def long_lease(settings: PaymentsSettings) -> PaymentsSettings:
    """Settings whose lease outlasts the test, for the holder `take_shard` pauses: its renewal (due a third
    into the lease) must not see the fence before the call under test does. With the 1 s lease a loaded
    machine let the renewal find it first, and the holder took the shard back and applied the call."""
    return settings.model_copy(update={"shard_lease_ms": holder_lease_ms})


def later_ms() -> int:
    return int((time.time() + due_later_s) * 1000)


async def tamper(backend: StorageBackend, tenant: str, account_id: str, **added: int) -> None:
    """Add to columns of an account's row in storage, behind the ledger's back."""
    partition = SHARDS_TABLE.partition(tenant, shard_of(account_id, SHARDS))
    row = await backend.read_row(partition, ("account", account_id))
    assert row is not None
    values: dict[str, Value] = {column: row.as_int(column) + added[column] for column in added}
    await backend.write(Batch(partition, (Put(("account", account_id), values),)))


def hide_once(backend: StorageBackend, hidden: PartitionRef) -> None:
    """The next read of `hidden` misses it, as a read racing the write of the row would."""
    read_row = backend.read_row
    pending = [hidden]

    async def racing(
        partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        if pending and (partition.table.name, partition.key) == (hidden.table.name, hidden.key):
            pending.clear()
            return None
        return await read_row(partition, clustering, consistency)

    backend.read_row = racing  # type: ignore[method-assign]


async def test_reconcile_finds_what_does_not_add_up(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """The auditor's own check: clean on a quiet ledger with a hold, an escrow and a credit in flight;
    each kind of difference once the rows are changed behind the ledger's back."""
    ledger, buyer, seller, pool = await buyer_and_seller(backend, settings, tenant)
    await ledger.create_hold(tenant, HoldCommand(buyer, seller, CURRENCY, 600, later_ms()), key())
    escrow = EscrowCommand(buyer, seller, pool, CURRENCY, 300, "", 0, later_ms())
    await ledger.create_escrow(tenant, escrow, key())
    ledger.shards.deliveries.start = lambda sender, key, entry, fresh=False: None  # type: ignore[method-assign,misc]
    await pay(ledger, tenant, buyer, (seller, 50))
    await ledger.stop()
    report = await reconcile(backend, tenant, SYSTEM_CLOCK)
    assert (report.clean, report.accounts_checked, report.in_flight_minor) == (True, 4, 50)
    await tamper(backend, tenant, buyer, held_minor=7)
    await tamper(backend, tenant, seller, held_minor=1, entry_seq=1)
    await tamper(backend, tenant, pool, ledger_minor=3)
    found = {(d.kind, d.account_id) for d in (await reconcile(backend, tenant, SYSTEM_CLOCK)).discrepancies}
    kind = DiscrepancyKind
    assert found == {
        (kind.HELD, buyer),
        (kind.HELD, seller),
        (kind.NEGATIVE_AVAILABLE, seller),
        (kind.ENTRY_COUNT, seller),
        (kind.ESCROW, pool),
        (kind.JOURNAL_SUM, pool),
        (kind.JOURNAL_BALANCE, pool),
        (kind.MONEY_NOT_CONSERVED, ""),
    }


# Bugs the simulation found, each reduced to a minimal test.


async def test_a_transfer_delivered_twice_is_credited_once(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A payer shard acquired again while a delivery still runs delivers the same outbox entry a second
    time (the simulation on Cassandra, e.g. seed 1968455435). When both credits, or both `Delivered`,
    land in one group, the batch writes a row twice: the shard actor dies of the InvariantViolation and
    every later call to that shard hangs. In two groups, the payee is paid twice."""
    ledger = Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    deliver = ledger.shards.committed

    def deliver_twice(actor: Shard, owed: Sequence[str], settled: Sequence[str]) -> None:
        deliver(actor, owed, settled)
        deliver(actor, owed, settled)

    ledger.shards.committed = deliver_twice  # type: ignore[method-assign]
    paid = await pay(ledger, tenant, bank, (buyer, 100))
    assert (
        await completed(ledger, tenant, paid.transfer_id, polls_max=wait_steps_max, poll_s=wait_step_s)
    ).state is TransferState.COMPLETED
    assert await balance(ledger, tenant, buyer) == 100
    await ledger.stop()


async def test_a_void_retried_after_unavailable_voids_the_hold(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """The request id is claimed before the shard commits. When the commit fails, the retry with the
    same request id finds its claim and answers the hold as it is, still held, without voiding it.
    capture_hold, release_escrow, refund_escrow and dispute_escrow do the same."""
    old, buyer, seller, _ = await buyer_and_seller(backend, long_lease(settings), tenant)
    hold = await old.create_hold(tenant, HoldCommand(buyer, seller, CURRENCY, 600, later_ms()), key())
    await take_shard(backend, settings, tenant, buyer)
    void = key("void-1")
    with pytest.raises(ApiError) as fenced:
        await old.void_hold(tenant, hold.hold_id, void)
    assert fenced.value.code == ErrorCode.UNAVAILABLE
    assert (await old.void_hold(tenant, hold.hold_id, void)).state is HoldState.VOIDED
    assert (await old.get_account(tenant, buyer)).balance.held_minor == 0
    await old.stop()


async def test_an_escrow_retried_after_unavailable_is_created(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """The same claim-then-fail as above: the retry of create_escrow answers ESCROW_NOT_FOUND forever
    (the simulation also sees it while the escrow's funding credit is still in flight)."""
    old, buyer, seller, pool = await buyer_and_seller(backend, long_lease(settings), tenant)
    await take_shard(backend, settings, tenant, buyer)
    command = EscrowCommand(buyer, seller, pool, CURRENCY, 400, "", 0, later_ms())
    order = key("order-1")
    with pytest.raises(ApiError) as fenced:
        await old.create_escrow(tenant, command, order)
    assert fenced.value.code == ErrorCode.UNAVAILABLE
    escrow = await old.create_escrow(tenant, command, order)
    assert (escrow.state, escrow.amount_minor) == (EscrowState.HELD, 400)
    await old.stop()


async def test_a_retry_racing_the_first_attempt_is_applied_once(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A retry looks the transfer up only once the payer's shard is owned: a transfer committed by an
    earlier owner is in payments_transfers by then, one committed by this owner is in its memory. So a
    retry whose look-up ran before the first attempt committed (here: the read is made to miss it), one
    sent at the same time, and one sent to a new owner are all answered with the first transfer."""
    first = Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(first, tenant, bank, allow_negative=True)
    await open_account(first, tenant, buyer)
    racing = [pay(first, tenant, bank, (buyer, 100), request_id="order-1") for _ in range(2)]
    paid, raced = await asyncio.gather(*racing)
    assert raced.transfer_id == paid.transfer_id
    hide_once(backend, TRANSFERS.partition(tenant, paid.transfer_id))
    missed = await pay(first, tenant, bank, (buyer, 100), request_id="order-1")
    assert missed.transfer_id == paid.transfer_id
    await pay(first, tenant, bank, (buyer, 1))
    await first.stop()
    second = Ledger(backend, settings)
    again = await pay(second, tenant, bank, (buyer, 100), request_id="order-1")
    assert again.transfer_id == paid.transfer_id
    assert await balance(second, tenant, buyer) == 101
    await second.stop()


async def test_a_rejected_request_stays_rejected(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """The same id and body return the first result, a refusal too: sent again once the payer has the
    money, the request is still refused (a retry racing the first attempt never gets both answers)."""
    ledger = Ledger(backend, settings)
    bank, buyer, merchant = ids_in_distinct_shards("acct", SHARDS, 3)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    await open_account(ledger, tenant, merchant)
    for _ in range(2):
        with pytest.raises(ApiError) as short:
            await pay(ledger, tenant, buyer, (merchant, 500), request_id="order-1")
        assert short.value.reason == Reason.INSUFFICIENT_FUNDS
        await pay(ledger, tenant, bank, (buyer, 1_000))
    assert await balance(ledger, tenant, merchant) == 0
    refused = await ledger.get_transfer(tenant, transfer_id_of(tenant, "order-1"))
    assert refused.state is TransferState.REJECTED
    assert refused.failure is not None and refused.failure.reason == Reason.INSUFFICIENT_FUNDS
    await ledger.stop()


async def test_a_dispute_of_a_disputed_escrow_is_kept_for_its_retries(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A dispute that finds its escrow disputed already (by another request) is answered with it; its
    retry after the escrow was refunded gets the escrow again, not INVALID_STATE (the simulation on
    simulated time, seed 20261201, 248,084 operations in)."""
    ledger, buyer, seller, pool = await buyer_and_seller(backend, settings, tenant)
    escrow = await ledger.create_escrow(
        tenant, EscrowCommand(buyer, seller, pool, CURRENCY, 300, "", 0, later_ms()), key()
    )
    await ledger.dispute_escrow(tenant, escrow.escrow_id, key("dispute-1"))
    second = await ledger.dispute_escrow(tenant, escrow.escrow_id, key("dispute-2"))
    assert second.state is EscrowState.DISPUTED
    await ledger.refund_escrow(tenant, escrow.escrow_id, 0, key("refund-1"))
    again = await ledger.dispute_escrow(tenant, escrow.escrow_id, key("dispute-2"))
    assert again.state is EscrowState.REFUNDED
    await ledger.stop()
