"""Statements: an account's journal entries by sequence or time, and its balance at a past time, read
from `payments_entries` (entry times never decrease per account, so a time is found by a binary search
on `entry_seq`); and the ledger as stored, read without owning its shards (the statement export in the
Flight process, reconciliation)."""

from __future__ import annotations

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.payments.api import BalanceAt, EntryQuery
from jubao_server.payments.journal import entry_of_row
from jubao_server.payments.machine import ACCOUNT, account_of_row
from jubao_server.payments.model import Entry
from jubao_server.payments.state import AccountState
from jubao_server.payments.tables import ENTRIES, SHARDS, TENANT_CONFIG
from jubao_server.shards.stage import shard_of
from jubao_server.storage.contract import Bound, RowQuery, StorageBackend


async def list_entries(
    backend: StorageBackend, tenant_id: str, query: EntryQuery, last_entry_seq: int
) -> tuple[list[Entry], int | None]:
    """A page of entries and the position after it; `last_entry_seq`: the account's newest entry."""
    partition = ENTRIES.partition(tenant_id, query.account_id)
    first = query.after_entry_seq + 1 if query.after_entry_seq is not None else 1
    if query.start_time_ms is not None:
        start = await first_entry_at(
            backend, tenant_id, query.account_id, query.start_time_ms, last_entry_seq
        )
        first = max(first, start)
    rows = RowQuery(partition, lower=Bound((first,), inclusive=True), limit=query.limit)
    page = await backend.read_page(rows)
    entries = [entry_of_row(query.account_id, r) for r in page.rows]
    if query.end_time_ms is not None:
        entries = [e for e in entries if e.time_ms < query.end_time_ms]
        if len(entries) < len(page.rows):
            return entries, None
    return entries, entries[-1].entry_seq if page.next_after is not None and entries else None


async def balance_at(
    backend: StorageBackend, tenant_id: str, account_id: str, time_ms: int, last_entry_seq: int
) -> BalanceAt:
    after = await first_entry_at(backend, tenant_id, account_id, time_ms + 1, last_entry_seq)
    if after <= 1:
        return BalanceAt(account_id, time_ms, 0, 0)
    row = await backend.read_row(ENTRIES.partition(tenant_id, account_id), (after - 1,))
    ensure(row is not None, "journal entries before the newest are materialized")
    return BalanceAt(account_id, time_ms, row.as_int("balance_after_minor") if row else 0, after - 1)


async def first_entry_at(
    backend: StorageBackend, tenant_id: str, account_id: str, start_time_ms: int, last_seq: int
) -> int:
    """The first entry_seq at or after `start_time_ms` (entry times never decrease): a binary search."""
    partition = ENTRIES.partition(tenant_id, account_id)
    low, high = 1, last_seq + 1
    for _ in range(limits.binary_search_steps_max):
        if low >= high:
            return low
        middle = (low + high) // 2
        row = await backend.read_row(partition, (middle,))
        if row is not None and row.as_int("time_ms") < start_time_ms:
            low = middle + 1
        else:
            high = middle
    return low


async def stored_shard_count(backend: StorageBackend, tenant_id: str) -> int:
    """0 for a tenant that never used the ledger."""
    row = await backend.read_row(TENANT_CONFIG.partition(tenant_id))
    return row.as_int("shard_count") if row is not None else 0


async def stored_account(backend: StorageBackend, tenant_id: str, account_id: str) -> AccountState | None:
    """The account as its shard's owner last stored it (every owner stores a commit before answering)."""
    shard_count = await stored_shard_count(backend, tenant_id)
    if shard_count == 0:
        return None
    partition = SHARDS.partition(tenant_id, shard_of(account_id, shard_count))
    row = await backend.read_row(partition, (ACCOUNT, account_id))
    return account_of_row(row) if row is not None else None
