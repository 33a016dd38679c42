"""A shard's write-ahead log as rows of its partition (row kind `wal`).

Records are numbered by the shard's sequence (`last_seq` counts them), one number per record. A group
commit stores its records as one row, keyed by the sequence number of its last record (`wal_key`): a
JSON array of the group's records, numbered up to the key; a group of one record is that record alone,
which is also how every record was stored before groups shared a row. Keyed by the last number, the
rows after a sequence number `n` (an exclusive lower bound on `wal_key(n)`) are exactly the rows that
hold a record after `n`, so recovery (`materialized_seq`) and readers of the log (a cursor) read from
where they stopped and drop what comes before it in the first row.
"""

from __future__ import annotations

from typing import Generic

import msgspec

from jubao_server.invariants import ensure
from jubao_server.shards.stage import RecordT
from jubao_server.storage.contract import Put, Row

WAL = "wal"
EMPTY_RECORD = b"{}"


def wal_key(seq: int) -> str:
    return f"{seq:019d}"


def record_blob(row: Row) -> bytes:
    """The `record` column of a shard row (a message, an outbox entry, a record)."""
    value = row["record"]
    return value if isinstance(value, bytes) else EMPTY_RECORD


class WalCodec(Generic[RecordT]):
    """Records to the rows of a group commit and back."""

    def __init__(self, record_type: type[RecordT]) -> None:
        self._encoder = msgspec.json.Encoder()
        self._one = msgspec.json.Decoder(record_type)
        self._many = msgspec.json.Decoder(list[record_type])  # type: ignore[valid-type]

    def put(self, records: list[tuple[int, RecordT]], ttl_s: int) -> Put:
        """The row of a group's records (numbered in order, at least one)."""
        ensure(bool(records), "a write-ahead row holds at least one record")
        last_seq = records[-1][0]
        ensure(last_seq - records[0][0] + 1 == len(records), "a group's records are numbered in a row")
        body = records[0][1] if len(records) == 1 else [record for _, record in records]
        return Put((WAL, wal_key(last_seq)), {"record": self._encoder.encode(body)}, ttl_s=ttl_s)

    def records(self, row: Row, after_seq: int = 0) -> list[tuple[int, RecordT]]:
        """The records of a write-ahead row numbered after `after_seq`, with their numbers."""
        last_seq = int(row.as_text("row_key"))
        blob = record_blob(row)
        group = self._many.decode(blob) if blob[:1] == b"[" else [self._one.decode(blob)]
        first_seq = last_seq - len(group) + 1
        return [(first_seq + i, record) for i, record in enumerate(group) if first_seq + i > after_seq]
