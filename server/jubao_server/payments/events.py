"""The tenant's money events, read from the shards' write-ahead records.

Every committed command leaves one record per shard sequence number (`row_kind = "wal"`, kept
`wal_ttl_s`). An event is such a record: its id `"<shard>.<seq>"` is stable, the order of one shard's
events is its commit order, and an account lives in one shard, so the events of an account come in
order. A cursor is the last sequence number read in every shard; a watcher resumes from it and may see
an event again only if it resumes from an older cursor (at least once). A cursor older than what a shard
still keeps is refused with `FAILED_PRECONDITION` (`CURSOR_EXPIRED`) rather than skipping events.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from enum import StrEnum

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.errors import failed_precondition, invalid
from jubao_server.payments.commands import (
    Record,
    decode,
    escrow_from_record,
    hold_from_record,
    transfer_id_of_record,
    transfer_of,
)
from jubao_server.payments.model import Entry, EntryKind, Escrow, Hold, Transfer, TransferState
from jubao_server.payments.shard import wal_key
from jubao_server.payments.tables import SHARDS
from jubao_server.storage.contract import Bound, Consistency, RowQuery, StorageBackend

_CURSOR_KIND = "WatchEvents"
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
    "open_account": EventKind.ACCOUNT_OPENED,
    "update_account": EventKind.ACCOUNT_UPDATED,
    "credit": EventKind.TRANSFER_CREDITED,
    "delivered": EventKind.TRANSFER_COMPLETED,
    "rejected": EventKind.TRANSFER_REJECTED,
    "refund": EventKind.REFUND_CREATED,
} | {kind.value: kind for kind in EventKind if kind.name.startswith(("HOLD_", "ESCROW_"))}


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
            lower=Bound(("wal", wal_key(after)), inclusive=False),
            upper=Bound(("wal",), inclusive=True),
            limit=per_shard_max,
        )
        rows = (await backend.read_page(query)).rows
        if rows and after and int(rows[0].as_text("row_key")) != after + 1:
            raise failed_precondition(
                Reason.CURSOR_EXPIRED, f"events of shard {shard} after {after} are no longer kept"
            )
        for row in rows:
            seq = int(row.as_text("row_key"))
            events.append(event_of(shard, seq, decode(row["record"])))
            seqs[shard] = seq
    return events


def event_of(shard: int, seq: int, record: Record) -> Event:
    transfer = transfer_of(record)
    hold = hold_from_record(record["hold"]) if "hold" in record else None
    escrow = escrow_from_record(record["escrow"]) if "escrow" in record else None
    transfer_id = transfer_id_of_record(record)
    entries = tuple(_entry(posting, transfer_id) for posting in record.get("postings", ()))
    accounts = {entry.account_id for entry in entries}
    legs = transfer.legs if transfer is not None else ()
    accounts.update(a for leg in legs for a in (leg.debit_account_id, leg.credit_account_id))
    accounts.update(a for debit, credit, _ in record.get("legs", ()) for a in (debit, credit))
    accounts.update(_parties(hold, escrow))
    if "account_id" in record:
        accounts.add(record["account_id"])
    return Event(
        event_id=f"{shard}.{seq}",
        kind=_kind(record, transfer, escrow),
        time_ms=int(record.get("time_ms", 0)),
        account_ids=tuple(sorted(accounts)),
        transfer_id=transfer_id,
        transfer=transfer,
        hold=hold,
        escrow=escrow,
        entries=entries,
    )


def _kind(record: Record, transfer: Transfer | None, escrow: Escrow | None) -> EventKind:
    kind = record["type"]
    if escrow is not None and kind in ("transfer", "credit"):
        return EventKind.ESCROW_CREATED
    if kind == "transfer" and transfer is not None:
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


def _entry(posting: Record, transfer_id: str) -> Entry:
    return Entry(
        account_id=posting["account_id"],
        entry_seq=posting["entry_seq"],
        transfer_id=transfer_id,
        leg_index=posting["leg_index"],
        kind=EntryKind(posting["kind"]),
        amount_minor=posting["amount_minor"],
        balance_after_minor=posting["balance_after_minor"],
        time_ms=posting["time_ms"],
    )
