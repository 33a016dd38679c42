"""The journal: what the write-ahead records of a payments shard materialize into, and reading it back.

One immutable row per entry in `payments_entries` (account partition, `entry_seq` order, running
balance), the transfer in `payments_transfers`. The writes are idempotent (same key, same values): the
runtime writes them with the commit (`write_after`) and again, after a crash, for every record after the
shard's `materialized_seq`.

A transfer's row is written once, when its payer's shard commits it. One that owes credits to other
shards is written debited and names the outbox entry owing them (`owed_shard`, `owed_entry`): the entry
is stored in the same commit, before the row, and dropped only once every credit landed, so a read that
finds the row debited answers it completed when the entry is gone or when every message of the entry
left its marker in its shard (`find_transfer`: the callers waiting for the credits are answered as soon
as they landed, before the entry is dropped), and settling the entry writes nothing here. Rows written
by earlier versions name no entry: their transfers are written completed when their entries settle, as
then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Final

import msgspec

from jubao_server import limits
from jubao_server.payments.model import Entry, EntryKind, Failure, Transfer, TransferState
from jubao_server.payments.records import (
    ENCODER,
    OUTBOX,
    CreditMessage,
    LegRecord,
    Record,
    RecordType,
    TransferRecord,
    legs_of,
    messages_of,
)
from jubao_server.payments.tables import CREDIT_MARKERS, ENTRIES, SHARDS, TRANSFERS
from jubao_server.shards.actor import OUTBOX as OUTBOX_KIND
from jubao_server.shards.delivery import landed
from jubao_server.shards.stage import ShardId
from jubao_server.shards.wal import record_blob
from jubao_server.storage.contract import BulkPut, BulkRow, Following, Row, StorageBackend, Table

_LEGS = msgspec.json.Decoder(tuple[LegRecord, ...])
_FAILURE = msgspec.json.Decoder(Failure)


# The columns of the journal's rows, in the order their values are given.
_ENTRY_COLUMNS: Final = (
    "transfer_id",
    "leg_index",
    "entry_kind",
    "amount_minor",
    "balance_after_minor",
    "time_ms",
)
_TRANSFER_COLUMNS: Final = (
    "request_id",
    "body_sha256",
    "currency",
    "legs",
    "memo",
    "state",
    "create_time_ms",
    "failure",
    "owed_shard",
    "owed_entry",
)
_STATE_COLUMNS: Final = ("state",)


def materialize(shard: ShardId, records: Sequence[tuple[int, Record]]) -> list[Following]:
    """The idempotent journal writes of the records of `shard`, in bulk (`BulkPut`: checked once, no
    batch per row): every entry, then every transfer's row. A transfer settled in the same records is
    written completed, so the writes of one set never race on a transfer's state; a settled entry its
    rows name is written nothing for (see the module)."""
    tenant_id = shard.scope
    delivered = {r.transfer_id for _, r in records if r.type is RecordType.DELIVERED}
    entries: list[BulkRow] = []
    transfers: dict[str, BulkRow] = {}
    completed: dict[str, BulkRow] = {}
    for _, record in records:
        transfer_id = record.about_transfer_id
        entries += [
            (
                (p.account_id,),
                (p.entry_seq,),
                (transfer_id, p.leg_index, p.kind.value, p.amount_minor, p.balance_after_minor, p.time_ms),
            )
            for p in record.postings
        ]
        if record.transfer is not None:
            state = TransferState.COMPLETED if transfer_id in delivered else record.transfer.state
            owed = (shard.shard, record.owed_entry) if record.owed_entry else None
            transfers[transfer_id] = _transfer_row(record.transfer, record.body_sha256, state, owed)
        elif record.type is RecordType.DELIVERED and not record.owed_entry:
            completed[transfer_id] = ((transfer_id,), (), (TransferState.COMPLETED.value,))
    return [
        *_bulk(ENTRIES, tenant_id, _ENTRY_COLUMNS, entries),
        *_bulk(TRANSFERS, tenant_id, _TRANSFER_COLUMNS, list(transfers.values())),
        *_bulk(TRANSFERS, tenant_id, _STATE_COLUMNS, list(completed.values())),
    ]


def _bulk(table: Table, scope: str, columns: tuple[str, ...], rows: list[BulkRow]) -> list[BulkPut]:
    """`rows` as bulk puts of at most `storage_bulk_put_rows_max` rows."""
    step = limits.storage_bulk_put_rows_max
    return [BulkPut(table, scope, columns, tuple(rows[i : i + step])) for i in range(0, len(rows), step)]


def _transfer_row(
    transfer: TransferRecord, body_sha256: str, state: TransferState, owed: tuple[int, str] | None
) -> BulkRow:
    """A transfer's row, from its record (its legs as the record has them: debit, credit, amount);
    `owed`: the shard and key of the outbox entry owing its credits. `owed_shard` and `owed_entry` are
    written also when nothing is owed, so that every transfer row has the same columns."""
    values = (
        transfer.request_id,
        body_sha256,
        transfer.currency,
        ENCODER.encode(transfer.legs).decode(),
        transfer.memo,
        state.value,
        transfer.create_time_ms,
        ENCODER.encode(transfer.failure).decode() if transfer.failure else None,
        owed[0] if owed is not None else None,
        owed[1] if owed is not None else None,
    )
    return (transfer.transfer_id,), (), values


async def find_transfer(backend: StorageBackend, tenant_id: str, transfer_id: str) -> Transfer | None:
    """A transfer as stored; completed once every credit of the outbox entry its row names landed: the
    entry is gone, or each of its messages left its marker (see the module)."""
    row = await backend.read_row(TRANSFERS.partition(tenant_id, transfer_id))
    if row is None:
        return None
    transfer = transfer_of_row(transfer_id, row)
    owed_entry = row["owed_entry"]
    if transfer.state is not TransferState.DEBITED or not isinstance(owed_entry, str):
        return transfer
    outbox = SHARDS.partition(tenant_id, row.as_int("owed_shard"))
    entry = await backend.read_row(outbox, (OUTBOX_KIND, owed_entry))
    if entry is not None:
        for message in messages_of(owed_entry, OUTBOX.decode(record_blob(entry))):
            if not await credit_landed(backend, tenant_id, message):
                return transfer
    return dataclasses.replace(transfer, state=TransferState.COMPLETED)


async def credit_landed(backend: StorageBackend, tenant_id: str, message: CreditMessage) -> bool:
    """Whether a credit message landed in its shard (its credit marker is there)."""
    return await landed(backend, SHARDS, CREDIT_MARKERS, tenant_id, message)


def transfer_of_row(transfer_id: str, row: Row) -> Transfer:
    failure = row["failure"]
    return Transfer(
        transfer_id=transfer_id,
        request_id=row.as_text("request_id"),
        currency=row.as_text("currency"),
        legs=legs_of(_LEGS.decode(row.as_text("legs"))),
        memo=row.as_text("memo"),
        state=TransferState(row.as_text("state")),
        create_time_ms=row.as_int("create_time_ms"),
        failure=_FAILURE.decode(failure) if isinstance(failure, str) else None,
    )


def entry_of_row(account_id: str, row: Row) -> Entry:
    return Entry(
        account_id=account_id,
        entry_seq=row.as_int("entry_seq"),
        transfer_id=row.as_text("transfer_id"),
        leg_index=row.as_int("leg_index"),
        kind=EntryKind(row.as_text("entry_kind")),
        amount_minor=row.as_int("amount_minor"),
        balance_after_minor=row.as_int("balance_after_minor"),
        time_ms=row.as_int("time_ms"),
    )
