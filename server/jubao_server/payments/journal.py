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

import msgspec

from jubao_server import limits
from jubao_server.payments.model import Entry, EntryKind, Failure, Transfer, TransferState
from jubao_server.payments.records import (
    ENCODER,
    OUTBOX,
    CreditMessage,
    LegRecord,
    Posting,
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
from jubao_server.storage.contract import Batch, Put, Row, StorageBackend, Value

_LEGS = msgspec.json.Decoder(tuple[LegRecord, ...])
_FAILURE = msgspec.json.Decoder(Failure)


def materialize(shard: ShardId, records: Sequence[tuple[int, Record]]) -> list[Batch]:
    """The idempotent journal writes of the records of `shard`: an account's entries in one batch (of at
    most `batch_rows_max` rows), each transfer's row in its own. A transfer settled in the same records is
    written completed, so the writes of one set never race on a transfer's state; a settled entry its
    rows name is written nothing for (see the module)."""
    tenant_id = shard.scope
    delivered = {r.transfer_id for _, r in records if r.type is RecordType.DELIVERED}
    entries: dict[str, list[Put]] = {}
    transfers: list[Batch] = []
    for _, record in records:
        transfer_id = record.about_transfer_id
        for posting in record.postings:
            entries.setdefault(posting.account_id, []).append(_entry(posting, transfer_id))
        if record.transfer is not None:
            state = TransferState.COMPLETED if transfer_id in delivered else record.transfer.state
            owed = (shard.shard, record.owed_entry) if record.owed_entry else None
            transfers.append(_transfer_batch(tenant_id, record.transfer, record.body_sha256, state, owed))
        elif record.type is RecordType.DELIVERED and not record.owed_entry:
            put = Put((), {"state": TransferState.COMPLETED.value})
            transfers.append(Batch(TRANSFERS.partition(tenant_id, transfer_id), (put,)))
    step = limits.batch_rows_max
    batches: list[Batch] = []
    for account_id, puts in entries.items():
        partition = ENTRIES.partition(tenant_id, account_id)
        batches += [Batch(partition, tuple(puts[i : i + step])) for i in range(0, len(puts), step)]
    return batches + transfers


def _entry(posting: Posting, transfer_id: str) -> Put:
    values: dict[str, Value] = {
        "transfer_id": transfer_id,
        "leg_index": posting.leg_index,
        "entry_kind": posting.kind.value,
        "amount_minor": posting.amount_minor,
        "balance_after_minor": posting.balance_after_minor,
        "time_ms": posting.time_ms,
    }
    return Put((posting.entry_seq,), values)


def _transfer_batch(
    tenant_id: str,
    transfer: TransferRecord,
    body_sha256: str,
    state: TransferState,
    owed: tuple[int, str] | None,
) -> Batch:
    """A transfer's row, from its record (its legs as the record has them: debit, credit, amount);
    `owed`: the shard and key of the outbox entry owing its credits."""
    values: dict[str, Value] = {
        "request_id": transfer.request_id,
        "body_sha256": body_sha256,
        "currency": transfer.currency,
        "legs": ENCODER.encode(transfer.legs).decode(),
        "memo": transfer.memo,
        "state": state.value,
        "create_time_ms": transfer.create_time_ms,
        "failure": ENCODER.encode(transfer.failure).decode() if transfer.failure else None,
        # Named also when nothing is owed, so that every transfer row has the same columns and a
        # group's rows go to storage together.
        "owed_shard": owed[0] if owed is not None else None,
        "owed_entry": owed[1] if owed is not None else None,
    }
    return Batch(TRANSFERS.partition(tenant_id, transfer.transfer_id), (Put((), values),))


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
