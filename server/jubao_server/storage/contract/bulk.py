"""The bulk put: rows derived from a commit (a journal's entries and transfers), many partitions of one
table in one checked value, without a `Batch`, a `PartitionRef` and a `Put` per row."""

from __future__ import annotations

import dataclasses

from jubao_server import limits
from jubao_server.storage.contract.batch import Batch
from jubao_server.storage.contract.checks import check_bulk_put
from jubao_server.storage.contract.tables import Table
from jubao_server.storage.contract.values import Key, Value
from jubao_server.storage.contract.writes import Put

# One row of a bulk put: its partition key (after the scope), its clustering key and the values of the
# bulk's columns, in their order.
BulkRow = tuple[Key, Key, tuple[Value, ...]]


@dataclasses.dataclass(frozen=True)
class BulkPut:
    """Unconditional puts of rows of one table in one scope, each row in the partition its key names,
    none with a TTL, each writing the same `columns` (the others keep their values, as a `Put`'s). It is
    checked when built, once for its shape and then row by row (`checks.check_bulk_put`).

    Not atomic and not ordered across its rows: it is what `StorageBackend.write_after` writes after the
    batch a journal derives from (SQLite in the batch's transaction), rows that may be written again
    (after a crash) and must then say the same."""

    table: Table
    scope: str
    columns: tuple[str, ...]
    rows: tuple[BulkRow, ...]

    def __post_init__(self) -> None:
        check_bulk_put(self.table, self.scope, self.columns, self.rows)

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def conditional(self) -> bool:
        """Never: a bulk put carries no conditions (as `Batch.conditional`)."""
        return False

    def batches(self) -> list[Batch]:
        """The same rows as batches of one partition each (at most `batch_rows_max` rows), for a backend
        that writes them one batch at a time."""
        by_partition: dict[Key, list[Put]] = {}
        for partition_key, clustering, values in self.rows:
            put = Put(clustering, dict(zip(self.columns, values, strict=True)))
            by_partition.setdefault(partition_key, []).append(put)
        step = limits.batch_rows_max
        return [
            Batch(self.table.partition(self.scope, *key), tuple(puts[i : i + step]))
            for key, puts in by_partition.items()
            for i in range(0, len(puts), step)
        ]


# What `StorageBackend.write_after` writes after its batch: batches of other partitions, or bulk puts.
Following = Batch | BulkPut
