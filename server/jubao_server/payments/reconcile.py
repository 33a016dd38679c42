"""Reconciliation: a read-only audit of one tenant's ledger, straight from storage.

What must hold whatever the shards, the crashes and the retries did (ARCHITECTURE.md, "Payments ledger"):

* per currency, the account balances plus the credits in flight (debited at the payer, owed in its
  outbox, not landed yet: no credit marker at the payee) add up to zero;
* an account's journal has `entry_seq` entries, summing to the ledger balance, the last one's running
  balance equal to it;
* `held_minor` is the sum of the account's open holds; an escrow account holds exactly what its open
  escrows have left;
* no account without `allow_negative` has a negative available balance (ledger - held).

Shards are read one after the other, so money moving between two of them while they are read would
look lost or doubled: a pass counts only if no shard committed while it ran (the `epoch` and `last_seq`
of every shard read the same before and after). After `reconcile_passes_max` moving passes the report
says so (`LEDGER_MOVING`) instead of guessing. Journal rows are written just after their commit, so an
account whose journal is short is read again once, a moment later, before a difference is reported.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.payments import journal
from jubao_server.payments.machine import ACCOUNT, ESCROW, HOLD
from jubao_server.payments.model import AccountKind, EscrowState, HoldState
from jubao_server.payments.records import ESCROWS, HOLDS, OUTBOX, OutboxEntry, messages_of
from jubao_server.payments.statements import stored_shard_count
from jubao_server.payments.tables import ENTRIES, SHARDS
from jubao_server.shards.actor import OUTBOX as OUTBOX_KIND
from jubao_server.shards.wal import record_blob
from jubao_server.storage.contract import (
    Bound,
    Consistency,
    Row,
    RowQuery,
    StorageBackend,
    StorageError,
    Value,
    read_all,
)

_OPEN_ESCROW = frozenset({EscrowState.HELD, EscrowState.DISPUTED})


class DiscrepancyKind(StrEnum):
    MONEY_NOT_CONSERVED = "money_not_conserved"
    ENTRY_COUNT = "entry_count"
    JOURNAL_SUM = "journal_sum"
    JOURNAL_BALANCE = "journal_balance"
    HELD = "held"
    ESCROW = "escrow"
    NEGATIVE_AVAILABLE = "negative_available"
    LEDGER_MOVING = "ledger_moving"


@dataclasses.dataclass(frozen=True)
class Discrepancy:
    """`account_id` is empty for a whole currency or the whole tenant (named in `detail`)."""

    kind: DiscrepancyKind
    account_id: str
    expected: int
    actual: int
    detail: str

    def __str__(self) -> str:
        where = f" {self.account_id}" if self.account_id else ""
        return f"{self.kind.value}{where}: expected {self.expected}, found {self.actual} ({self.detail})"


@dataclasses.dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    accounts: int
    ledger_minor: int
    in_flight_minor: int

    @property
    def total_minor(self) -> int:
        """Zero when money is conserved."""
        return self.ledger_minor + self.in_flight_minor


@dataclasses.dataclass(frozen=True)
class ReconcileReport:
    tenant_id: str
    shard_count: int
    accounts_checked: int
    currencies: tuple[CurrencyTotal, ...]
    discrepancies: tuple[Discrepancy, ...]

    @property
    def in_flight_minor(self) -> int:
        """Minor units debited but not credited yet, over every currency (each one: `currencies`)."""
        return sum(total.in_flight_minor for total in self.currencies)

    @property
    def clean(self) -> bool:
        return not self.discrepancies

    @property
    def moving(self) -> bool:
        """Whether the shards kept committing while they were read: audit again when idle."""
        return any(d.kind is DiscrepancyKind.LEDGER_MOVING for d in self.discrepancies)


@dataclasses.dataclass(frozen=True)
class _Account:
    account_id: str
    currency: str
    escrow: bool
    allow_negative: bool
    ledger_minor: int
    held_minor: int
    entry_seq: int

    @classmethod
    def of(cls, row: Row) -> _Account:
        return cls(
            row.as_text("row_key"),
            row.as_text("currency"),
            row["account_kind"] == AccountKind.ESCROW.value,
            bool(row["allow_negative"]),
            row.as_int("ledger_minor"),
            row.as_int("held_minor"),
            row.as_int("entry_seq"),
        )


@dataclasses.dataclass
class _Snapshot:
    """What one pass read: accounts, and per currency / account the amounts they must agree with."""

    accounts: list[_Account] = dataclasses.field(default_factory=list)
    in_flight_minor: Counter[str] = dataclasses.field(default_factory=Counter)
    held_minor: Counter[str] = dataclasses.field(default_factory=Counter)
    escrowed_minor: Counter[str] = dataclasses.field(default_factory=Counter)


@dataclasses.dataclass
class _Journal:
    count: int = 0
    sum_minor: int = 0
    last_seq: int = 0
    last_balance_minor: int = 0

    def add(self, row: Row) -> None:
        self.count += 1
        self.sum_minor += row.as_int("amount_minor")
        self.last_seq = row.as_int("entry_seq")
        self.last_balance_minor = row.as_int("balance_after_minor")


async def reconcile(backend: StorageBackend, tenant_id: str, clock: Clock) -> ReconcileReport:
    """Audit the tenant's ledger; reads only."""
    shard_count = await stored_shard_count(backend, tenant_id)
    snapshot, stable = await _stable_snapshot(backend, tenant_id, shard_count)
    totals, discrepancies = _conservation(snapshot)
    if not stable:
        detail = f"shards kept committing during {limits.reconcile_passes_max} passes; audit it when idle"
        discrepancies.append(Discrepancy(DiscrepancyKind.LEDGER_MOVING, "", 0, 0, detail))
    for account in snapshot.accounts:
        discrepancies += _balance_checks(account, snapshot)
    discrepancies += await _journal_checks(backend, tenant_id, snapshot.accounts, clock)
    return ReconcileReport(
        tenant_id, shard_count, len(snapshot.accounts), tuple(totals), tuple(discrepancies)
    )


async def _stable_snapshot(
    backend: StorageBackend, tenant_id: str, shard_count: int
) -> tuple[_Snapshot, bool]:
    """A snapshot no commit ran through, and True; or the last moving one and False."""
    snapshot, stable = await _pass(backend, tenant_id, shard_count)
    for _ in range(limits.reconcile_passes_max - 1):
        if stable:
            break
        snapshot, stable = await _pass(backend, tenant_id, shard_count)
    return snapshot, stable


async def _pass(backend: StorageBackend, tenant_id: str, shard_count: int) -> tuple[_Snapshot, bool]:
    before = await _versions(backend, tenant_id, shard_count)
    snapshot = _Snapshot()
    for shard in range(shard_count):
        await _read_shard(backend, tenant_id, shard, snapshot)
    return snapshot, await _versions(backend, tenant_id, shard_count) == before


async def _versions(backend: StorageBackend, tenant_id: str, shard_count: int) -> list[tuple[Value, Value]]:
    """(epoch, last_seq) of every shard: a new owner or any commit changes it."""
    versions: list[tuple[Value, Value]] = []
    for shard in range(shard_count):
        static = await backend.read_static(SHARDS.partition(tenant_id, shard), Consistency.SERIAL)
        versions.append((static["epoch"], static["last_seq"]) if static is not None else (None, None))
    return versions


async def _read_shard(backend: StorageBackend, tenant_id: str, shard: int, snapshot: _Snapshot) -> None:
    for kind, add in _ADDERS.items():
        async for row in _rows_of_kind(backend, tenant_id, shard, kind):
            add(snapshot, row)
    async for row in _rows_of_kind(backend, tenant_id, shard, OUTBOX_KIND):
        owed = OUTBOX.decode(record_blob(row))
        await _add_in_flight(backend, tenant_id, row.as_text("row_key"), owed, snapshot)


def _add_account(snapshot: _Snapshot, row: Row) -> None:
    snapshot.accounts.append(_Account.of(row))


def _add_hold(snapshot: _Snapshot, row: Row) -> None:
    hold = HOLDS.decode(record_blob(row))
    if hold.state is HoldState.HELD:
        snapshot.held_minor[hold.account_id] += hold.amount_minor


def _add_escrow(snapshot: _Snapshot, row: Row) -> None:
    escrow = ESCROWS.decode(record_blob(row))
    if escrow.state in _OPEN_ESCROW:
        snapshot.escrowed_minor[escrow.escrow_account_id] += escrow.amount_minor - escrow.refunded_minor


_ADDERS: dict[str, Callable[[_Snapshot, Row], None]] = {
    ACCOUNT: _add_account,
    HOLD: _add_hold,
    ESCROW: _add_escrow,
}


async def _add_in_flight(
    backend: StorageBackend, tenant_id: str, key: str, owed: OutboxEntry, snapshot: _Snapshot
) -> None:
    """The credits of an outbox entry that have not landed: a landed message left a credit marker at
    its shard (`records.CreditMessage.marker_key`), and the outbox entry goes only when all of them
    landed."""
    for message in messages_of(key, owed):
        if not await journal.credit_landed(backend, tenant_id, message):
            for part in message.parts():
                snapshot.in_flight_minor[part.currency] += part.credit.amount_minor


def _rows_of_kind(backend: StorageBackend, tenant_id: str, shard: int, kind: str) -> AsyncIterator[Row]:
    query = RowQuery(
        SHARDS.partition(tenant_id, shard),
        lower=Bound((kind,), inclusive=True),
        upper=Bound((kind,), inclusive=True),
        limit=limits.reconcile_page_rows_max,
    )
    return _scan(backend, query, limits.reconcile_shard_rows_max)


def _scan(backend: StorageBackend, query: RowQuery, rows_max: int) -> AsyncIterator[Row]:
    """Every row of a range read, page by page; StorageError past `rows_max` rows."""
    table = query.partition.table.name
    return read_all(
        backend,
        query,
        -(-rows_max // query.limit),
        lambda: StorageError(f"{table}: more than {rows_max} rows to reconcile"),
    )


def _conservation(snapshot: _Snapshot) -> tuple[list[CurrencyTotal], list[Discrepancy]]:
    ledger_minor: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    for account in snapshot.accounts:
        ledger_minor[account.currency] += account.ledger_minor
        accounts[account.currency] += 1
    totals: list[CurrencyTotal] = []
    found: list[Discrepancy] = []
    for currency in sorted(set(ledger_minor) | set(snapshot.in_flight_minor)):
        total = CurrencyTotal(
            currency, accounts[currency], ledger_minor[currency], snapshot.in_flight_minor[currency]
        )
        totals.append(total)
        detail = f"{currency}: balances {total.ledger_minor} + in flight {total.in_flight_minor}"
        found += _compare(DiscrepancyKind.MONEY_NOT_CONSERVED, "", 0, total.total_minor, detail)
    return totals, found


def _compare(
    kind: DiscrepancyKind, account_id: str, expected: int, actual: int, detail: str
) -> list[Discrepancy]:
    return [] if expected == actual else [Discrepancy(kind, account_id, expected, actual, detail)]


def _balance_checks(account: _Account, snapshot: _Snapshot) -> list[Discrepancy]:
    account_id = account.account_id
    held_minor = snapshot.held_minor[account_id]
    found = _compare(DiscrepancyKind.HELD, account_id, held_minor, account.held_minor, "sum of open holds")
    if account.escrow:
        escrowed_minor = snapshot.escrowed_minor[account_id]
        detail = "what its open escrows have left"
        found += _compare(DiscrepancyKind.ESCROW, account_id, escrowed_minor, account.ledger_minor, detail)
    available_minor = account.ledger_minor - account.held_minor
    if not account.allow_negative and available_minor < 0:
        detail = f"ledger {account.ledger_minor} - held {account.held_minor} without allow_negative"
        found.append(Discrepancy(DiscrepancyKind.NEGATIVE_AVAILABLE, account_id, 0, available_minor, detail))
    return found


async def _journal_checks(
    backend: StorageBackend, tenant_id: str, accounts: list[_Account], clock: Clock
) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    step = limits.reconcile_journals_concurrency_max
    for start in range(0, len(accounts), step):
        chunk = accounts[start : start + step]
        for discrepancies in await asyncio.gather(
            *(_journal_check(backend, tenant_id, a, clock) for a in chunk)
        ):
            found += discrepancies
    return found


async def _journal_check(
    backend: StorageBackend, tenant_id: str, account: _Account, clock: Clock
) -> list[Discrepancy]:
    journal = await _read_journal(backend, tenant_id, account, clock)
    account_id, ledger_minor = account.account_id, account.ledger_minor
    found = _compare(DiscrepancyKind.ENTRY_COUNT, account_id, account.entry_seq, journal.count, "entries")
    detail = "sum of the journal entries"
    found += _compare(DiscrepancyKind.JOURNAL_SUM, account_id, ledger_minor, journal.sum_minor, detail)
    if 0 < journal.last_seq == account.entry_seq:
        detail = f"balance_after_minor of entry {journal.last_seq}"
        balance_minor = journal.last_balance_minor
        found += _compare(DiscrepancyKind.JOURNAL_BALANCE, account_id, ledger_minor, balance_minor, detail)
    return found


async def _read_journal(backend: StorageBackend, tenant_id: str, account: _Account, clock: Clock) -> _Journal:
    """Entries 1..entry_seq. Entries of one commit land concurrently, so a short journal may miss any of
    them: it is read again, whole, once, after `reconcile_entries_settle_s`."""
    journal = await _journal(backend, tenant_id, account)
    if journal.count < account.entry_seq:
        await clock.sleep(limits.reconcile_entries_settle_s)
        journal = await _journal(backend, tenant_id, account)
    return journal


async def _journal(backend: StorageBackend, tenant_id: str, account: _Account) -> _Journal:
    journal = _Journal()
    if account.entry_seq == 0:
        return journal
    query = RowQuery(
        ENTRIES.partition(tenant_id, account.account_id),
        upper=Bound((account.entry_seq,), inclusive=True),
        limit=limits.reconcile_page_rows_max,
    )
    async for row in _scan(backend, query, limits.reconcile_entries_per_account_max):
        journal.add(row)
    return journal
