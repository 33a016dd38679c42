"""One partition in memory: its clustered rows in clustering order and its static columns."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Mapping

from jubao_server.storage.contract import Bound, Key, Row, Table, Value


@dataclasses.dataclass(slots=True)
class StoredRow:
    """The regular columns written so far (a column never written reads as null) and the row's expiry
    (wall time in ms; None: never)."""

    values: dict[str, Value]
    expires_ms: int | None

    def live(self, now_ms: int) -> bool:
        return self.expires_ms is None or self.expires_ms > now_ms


class Shape:
    """What reading a table's rows needs, worked out once per table: a row as read has its clustering
    columns, every regular column (null unless written) and every static column, in that order."""

    __slots__ = ("clustering_key", "nulls", "static_columns", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.clustering_key = table.clustering_key
        self.static_columns = table.static_column_order
        # A row as read before its values are filled in: every column null, in the order rows read.
        self.nulls: dict[str, Value] = dict.fromkeys(
            (*table.clustering_key, *table.regular_columns, *table.static_column_order)
        )


class Partition:
    """`keys` holds the clustering keys of `rows` sorted, so that range reads are bisections. Rows that
    expired stay until they are purged or overwritten; reads skip them."""

    __slots__ = ("_static_row", "keys", "rows", "shape", "static")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.keys: list[Key] = []
        self.rows: dict[Key, StoredRow] = {}
        self.static: dict[str, Value] = {}
        # The static columns as every row reads them (None: not worked out since the last write).
        self._static_row: dict[str, Value] | None = None

    @property
    def empty(self) -> bool:
        return not self.rows and not self.static

    def live_row(self, clustering: Key, now_ms: int) -> StoredRow | None:
        stored = self.rows.get(clustering)
        return stored if stored is not None and stored.live(now_ms) else None

    def read(self, clustering: Key, stored: StoredRow) -> Row:
        """The row as read: clustering, regular and static columns (nulls included)."""
        shape = self.shape
        values = shape.nulls.copy()
        for column, value in zip(shape.clustering_key, clustering, strict=True):
            values[column] = value
        values.update(stored.values)
        if shape.static_columns:
            values.update(self._statics())
        return Row(values)

    def read_static(self) -> Row | None:
        """The static columns, or None when none holds a value (as Cassandra reads an unwritten one)."""
        if not any(value is not None for value in self.static.values()):
            return None
        return Row(dict(self._statics()))

    def _statics(self) -> dict[str, Value]:
        if self._static_row is None:
            self._static_row = {c: self.static.get(c) for c in self.shape.static_columns}
        return self._static_row

    def put(self, clustering: Key, values: Mapping[str, Value], expires_ms: int | None, now_ms: int) -> None:
        """Write the listed columns and set the row's expiry; on a missing or expired row, a new row."""
        stored = self.live_row(clustering, now_ms)
        if stored is None:
            if clustering not in self.rows:
                bisect.insort(self.keys, clustering)
            self.rows[clustering] = StoredRow(dict(values), expires_ms)
            return
        stored.values.update(values)
        stored.expires_ms = expires_ms

    def delete(self, clustering: Key) -> None:
        if self.rows.pop(clustering, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, clustering)]

    def write_static(self, values: Mapping[str, Value]) -> None:
        """Static columns never expire: a batch gives static values no TTL."""
        self.static.update(values)
        self._static_row = None

    def in_range(self, lower: Bound | None, upper: Bound | None, reverse: bool) -> Iterator[Key]:
        """Clustering keys within the bounds, in clustering order or reversed. A bound compares the
        prefix of its own length, so an inclusive upper bound `(4,)` keeps every key starting with 4."""
        start, end = 0, len(self.keys)
        if lower is not None:
            size = len(lower.values)
            find = bisect.bisect_left if lower.inclusive else bisect.bisect_right
            start = find(self.keys, lower.values, key=lambda k: k[:size])
        if upper is not None:
            size = len(upper.values)
            find = bisect.bisect_right if upper.inclusive else bisect.bisect_left
            end = find(self.keys, upper.values, key=lambda k: k[:size])
        indexes = range(end - 1, start - 1, -1) if reverse else range(start, end)
        return (self.keys[i] for i in indexes)
