"""The tenant's money events, read from the shards' write-ahead records.

Every committed command leaves one record per shard sequence number (`shards.wal`: a group commit's
records share one row of kind `wal`, kept `wal_ttl_s`). An event is such a record: its id
`"<shard>.<seq>"` is stable, the order of one shard's events is its commit order, and an account lives
in one shard, so the events of an account come in order. A cursor is the last sequence number read in
every shard; a watcher resumes from it and may see an event again only if it resumes from an older
cursor (at least once). A cursor older than what a shard still keeps is refused with
`FAILED_PRECONDITION` (`CURSOR_EXPIRED`) rather than skipping events.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import failed_precondition, invalid
from jubao_server.payments.model import Entry, Escrow, Hold, Transfer, TransferState
from jubao_server.payments.records import Posting, Record, RecordType
from jubao_server.payments.tables import SHARDS
from jubao_server.shards.wal import WAL, WalCodec, wal_key
from jubao_server.storage.contract import Bound, Consistency, RowQuery, StorageBackend

_CURSOR_KIND = "WatchEvents"
_WAL = WalCodec(Record)
_SEQ = re.compile(r"^[0-9]{1,18}$")


class EventKind(StrEnum):
    ACCOUNT_OPENED = "account_opened"
    ACCOUNT_UPDATED = "account_updated"
    TRANSFER_DEBITED = "transfer_debited"
    TRANSFER_CREDITED = "transfer_credited"
    TRANSFER_COMPLETED = "transfer_completed"
    TRANSFER_REJECTED = "transfer_rejected"
    HOLD_CREATED = "hold_created"
    HOLD_CAPTURED = "hold_captured"
    HOLD_VOIDED = "hold_voided"
    HOLD_EXPIRED = "hold_expired"
    HOLD_REJECTED = "hold_rejected"
    ESCROW_CREATED = "escrow_created"
    ESCROW_RELEASED = "escrow_released"
    ESCROW_REFUNDED = "escrow_refunded"
    ESCROW_DISPUTED = "escrow_disputed"
    REFUND_CREATED = "refund_created"


_KIND_OF_TYPE = {
    RecordType.OPEN_ACCOUNT: EventKind.ACCOUNT_OPENED,
    RecordType.UPDATE_ACCOUNT: EventKind.ACCOUNT_UPDATED,
    RecordType.CREDIT: EventKind.TRANSFER_CREDITED,
    RecordType.DELIVERED: EventKind.TRANSFER_COMPLETED,
    RecordType.REJECTED: EventKind.TRANSFER_REJECTED,
    RecordType.REFUND: EventKind.REFUND_CREATED,
} | {record: EventKind(record.value) for record in RecordType if record.name.startswith(("HOLD_", "ESCROW_"))}


@dataclasses.dataclass(frozen=True)
class Event:
    event_id: str
    kind: EventKind
    time_ms: int
    # The accounts the event is about: the parties of its transfer, hold or escrow, and every account
    # it posted to.
    account_ids: tuple[str, ...]
    transfer_id: str
    transfer: Transfer | None
    hold: Hold | None
    escrow: Escrow | None
    entries: tuple[Entry, ...]


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Empty fields match everything."""

    kinds: frozenset[EventKind] = frozenset()
    account_id: str = ""

    def matches(self, event: Event) -> bool:
        kind_ok = not self.kinds or event.kind in self.kinds
        return kind_ok and (not self.account_id or self.account_id in event.account_ids)


def encode_cursor(seqs: list[int]) -> str:
    """A cursor is not signed: it only says where in the caller's own events to resume."""
    text = f"{_CURSOR_KIND}\n{','.join(str(seq) for seq in seqs)}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode_cursor(cursor: str, shard_count: int) -> list[int] | None:
    """The sequence numbers a cursor holds, or None for an empty cursor; INVALID_ARGUMENT otherwise."""
    if not cursor:
        return None
    refusal = invalid("cursor", "is not a cursor of this tenant's events")
    if len(cursor) > limits.page_token_length_max:
        raise refusal
    try:
        kind, _, text = base64.urlsafe_b64decode(cursor.encode()).decode().partition("\n")
    except (binascii.Error, ValueError):
        raise refusal from None
    parts = text.split(",")
    if kind != _CURSOR_KIND or len(parts) != shard_count or not all(_SEQ.match(part) for part in parts):
        raise refusal
    return [int(part) for part in parts]


async def last_seqs(backend: StorageBackend, tenant_id: str, shard_count: int) -> list[int]:
    """Where every shard's log ends now: a cursor from which only new events come."""
    seqs: list[int] = []
    for shard in range(shard_count):
        static = await backend.read_static(SHARDS.partition(tenant_id, shard), Consistency.SERIAL)
        seqs.append(static.as_int("last_seq") if static is not None and static["last_seq"] else 0)
    return seqs


async def read_events(
    backend: StorageBackend, tenant_id: str, seqs: list[int], per_shard_max: int
) -> list[Event]:
    """The events after `seqs` (at most `per_shard_max` per shard), advancing `seqs` past them."""
    events: list[Event] = []
    for shard, after in enumerate(seqs):
        query = RowQuery(
            SHARDS.partition(tenant_id, shard),
            lower=Bound((WAL, wal_key(after)), inclusive=False),
            upper=Bound((WAL,), inclusive=True),
            limit=per_shard_max,
        )
        rows = (await backend.read_page(query)).rows
        records = [record for row in rows for record in _WAL.records(row)]
        if records and after and records[0][0] > after + 1:
            raise failed_precondition(
                Reason.CURSOR_EXPIRED, f"events of shard {shard} after {after} are no longer kept"
            )
        for seq, record in [(seq, record) for seq, record in records if seq > after][:per_shard_max]:
            events.append(event_of(shard, seq, record))
            seqs[shard] = seq
    return events


def event_of(shard: int, seq: int, record: Record) -> Event:
    transfer = record.transfer.transfer() if record.transfer is not None else None
    transfer_id = record.about_transfer_id
    entries = tuple(_entry(posting, transfer_id) for posting in record.postings)
    accounts = {entry.account_id for entry in entries}
    legs = transfer.legs if transfer is not None else ()
    accounts.update(a for leg in legs for a in (leg.debit_account_id, leg.credit_account_id))
    accounts.update(a for debit, credit, _ in record.legs for a in (debit, credit))
    accounts.update(_parties(record.hold, record.escrow))
    if record.account_id:
        accounts.add(record.account_id)
    return Event(
        event_id=f"{shard}.{seq}",
        kind=_kind(record, transfer),
        time_ms=record.time_ms,
        account_ids=tuple(sorted(accounts)),
        transfer_id=transfer_id,
        transfer=transfer,
        hold=record.hold,
        escrow=record.escrow,
        entries=entries,
    )


def _kind(record: Record, transfer: Transfer | None) -> EventKind:
    kind = record.type
    if record.escrow is not None and kind in (RecordType.TRANSFER, RecordType.CREDIT):
        return EventKind.ESCROW_CREATED
    if kind is RecordType.TRANSFER and transfer is not None:
        done = transfer.state is TransferState.COMPLETED
        return EventKind.TRANSFER_COMPLETED if done else EventKind.TRANSFER_DEBITED
    return _KIND_OF_TYPE[kind]


def _parties(hold: Hold | None, escrow: Escrow | None) -> set[str]:
    parties: set[str] = set()
    if hold is not None:
        parties.update((hold.account_id, hold.payee_account_id))
    if escrow is not None:
        parties.update((escrow.buyer_account_id, escrow.seller_account_id, escrow.escrow_account_id))
    return parties


def _entry(posting: Posting, transfer_id: str) -> Entry:
    return Entry(
        account_id=posting.account_id,
        entry_seq=posting.entry_seq,
        transfer_id=transfer_id,
        leg_index=posting.leg_index,
        kind=posting.kind,
        amount_minor=posting.amount_minor,
        balance_after_minor=posting.balance_after_minor,
        time_ms=posting.time_ms,
    )


async def watch(
    backend: StorageBackend,
    clock: Clock,
    *,
    commit_signal: Callable[[], asyncio.Event],
    tenant_id: str,
    seqs: list[int],
    wanted: EventFilter,
) -> AsyncIterator[tuple[list[Event], str]]:
    """Batches of events after `seqs` with the cursor after them, for `events_stream_max_s`. A batch
    comes when events match, or every `events_heartbeat_s` while others go by (so the cursor moves on).
    Commits of this process wake the watcher (`commit_signal`); those of others are seen within
    `events_poll_s`."""
    started_s = last_sent_s = clock.monotonic_s()
    while clock.monotonic_s() - started_s < limits.events_stream_max_s:
        signal = commit_signal()
        events = await read_events(backend, tenant_id, seqs, limits.events_per_shard_max)
        matching = [event for event in events if wanted.matches(event)]
        if matching or (events and clock.monotonic_s() - last_sent_s >= limits.events_heartbeat_s):
            last_sent_s = clock.monotonic_s()
            yield matching, encode_cursor(seqs)
        elif not events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), limits.events_poll_s)
