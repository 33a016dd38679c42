"""Events from the shards' write-ahead records, on every backend: stable ids, kinds, per-account order,
and a cursor older than what is kept refused, never skipped."""

from __future__ import annotations

import asyncio

import pytest
from jubao.errors import Reason
from jubao_server.errors import ApiError
from jubao_server.payments.api import TransferCommand
from jubao_server.payments.config import PaymentsSettings
from jubao_server.payments.events import Event, EventKind, read_events
from jubao_server.payments.ledger import Ledger
from jubao_server.payments.model import Leg, Transfer
from jubao_server.payments.tables import SHARDS as SHARD_TABLE
from jubao_server.shards.stage import shard_of
from jubao_server.shards.wal import WAL
from jubao_server.storage.contract import Bound, RowQuery, StorageBackend

from tests.ledger.conftest import SHARDS
from tests.ledger.support import ids_in_distinct_shards, key, open_account, pay

GROUPED_TRANSFERS = 12
SETTLE_POLLS_MAX = 100
SETTLE_POLL_S = 0.05


async def settled_events(backend: StorageBackend, tenant: str, transfer_ids: list[str]) -> list[Event]:
    """Every event, once those of the transfers' completion are written: a transfer's is written when its
    payer's shard settles its outbox entry, with the shard's next commit or at its next upkeep tick,
    after the call that paid was answered."""
    events: list[Event] = []
    for _ in range(SETTLE_POLLS_MAX):
        events = await read_events(backend, tenant, [0] * SHARDS, 100)
        if [e.transfer_id for e in events if e.kind is EventKind.TRANSFER_COMPLETED] == transfer_ids:
            break
        await asyncio.sleep(SETTLE_POLL_S)
    return events


async def test_events_name_each_commit_once_in_order(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    ledger = Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    paid = [await pay(ledger, tenant, bank, (buyer, amount)) for amount in (5, 7)]
    events = await settled_events(backend, tenant, [t.transfer_id for t in paid])
    seqs = [0] * SHARDS
    assert await read_events(backend, tenant, seqs, 100) == events
    assert len({e.event_id for e in events}) == len(events)
    assert [e.kind for e in events].count(EventKind.ACCOUNT_OPENED) == 2
    credits = [entry for e in events for entry in e.entries if entry.account_id == buyer]
    assert [(c.entry_seq, c.balance_after_minor) for c in credits] == [(1, 5), (2, 12)]
    completed = [e.transfer_id for e in events if e.kind is EventKind.TRANSFER_COMPLETED]
    assert completed == [t.transfer_id for t in paid]
    assert await read_events(backend, tenant, seqs, 100) == []
    assert await read_events(backend, tenant, [0] * SHARDS, 100) == events
    await ledger.stop()


async def test_a_group_commit_is_one_row_and_its_events_page_from_inside_it(
    backend: StorageBackend, settings: PaymentsSettings, tenant: str
) -> None:
    """A batch's transfers from one payer commit as one group: their records share one write-ahead row,
    and events read a few at a time (cursors inside that row) are every event once, in order."""
    ledger = Ledger(backend, settings)
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    items = [
        (TransferCommand("CNY", (Leg(bank, buyer, amount),), ""), key(f"grouped-{amount}"))
        for amount in range(1, GROUPED_TRANSFERS + 1)
    ]
    outcomes = await ledger.create_transfers(tenant, items)
    assert all(isinstance(outcome, Transfer) for outcome in outcomes)
    payer_partition = SHARD_TABLE.partition(tenant, shard_of(bank, SHARDS))
    query = RowQuery(payer_partition, Bound((WAL,), True), Bound((WAL,), True), limit=100)
    transfer_ids = [outcome.transfer_id for outcome in outcomes if isinstance(outcome, Transfer)]
    everything = await settled_events(backend, tenant, transfer_ids)
    payer_rows = (await backend.read_page(query)).rows
    payer_events = [e for e in everything if e.event_id.startswith(f"{shard_of(bank, SHARDS)}.")]
    assert len(payer_rows) < len(payer_events) - GROUPED_TRANSFERS + 2
    seqs, paged = [0] * SHARDS, []
    for _ in range(len(everything)):
        page = await read_events(backend, tenant, seqs, 3)
        if not page:
            break
        paged += page
    assert sorted(e.event_id for e in paged) == sorted(e.event_id for e in everything)
    assert len(paged) == len(everything)
    await ledger.stop()


async def test_a_cursor_older_than_the_kept_events_is_refused(backend: StorageBackend, tenant: str) -> None:
    ledger = Ledger(backend, PaymentsSettings(shard_count=SHARDS, wal_ttl_s=1))
    bank, buyer = ids_in_distinct_shards("acct", SHARDS, 2)
    await open_account(ledger, tenant, bank, allow_negative=True)
    await open_account(ledger, tenant, buyer)
    seqs = [0] * SHARDS
    await read_events(backend, tenant, seqs, 100)
    stale = list(seqs)
    await pay(ledger, tenant, bank, (buyer, 5))
    await asyncio.sleep(2.2)
    assert await _refusal_within(ledger, backend, tenant, stale, (bank, buyer)) == Reason.CURSOR_EXPIRED
    await ledger.stop()


# A busy machine can keep a record alive past its TTL by the time the test reads (late commits, a slow
# node), so the refusal is awaited for a bounded time instead of assumed after one sleep. Cassandra
# keeps a cell's expiry in whole seconds, so a record kept 1 s may be gone a fraction of a second after
# it was written: every attempt pays first, so that an event newer than the expired ones is there to
# read, and a read that finds nothing at all is not taken for a cursor that is still good.
EXPIRY_WAIT_S = 15.0


async def _refusal_within(
    ledger: Ledger, backend: StorageBackend, tenant: str, stale: list[int], parties: tuple[str, str]
) -> str:
    payer, payee = parties
    deadline_s = asyncio.get_running_loop().time() + EXPIRY_WAIT_S
    while True:
        await pay(ledger, tenant, payer, (payee, 5))
        try:
            await read_events(backend, tenant, list(stale), 100)
        except ApiError as refused:
            return refused.reason
        if asyncio.get_running_loop().time() > deadline_s:
            pytest.fail(f"a cursor older than the kept events was still served after {EXPIRY_WAIT_S} s")
        await asyncio.sleep(0.2)
