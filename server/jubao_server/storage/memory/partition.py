"""One partition in memory: its clustered rows in clustering order and its static columns.

A long simulation keeps millions of rows (the journal, request claims), so a row is kept small: the
names of the columns written (one tuple shared by every row with the same columns, `Shape.columns`)
and a tuple of their values; a partition of a table without clustering columns (one row) keeps no
sorted keys, and one without static values no static columns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from jubao_server.invariants import unreachable
from jubao_server.storage.contract import Bound, Key, Row, Table, Value
from jubao_server.storage.memory.keys import SortedKeys


class StoredRow:
    """The regular columns written so far (`columns`, their `values`; a column never written reads as
    null) and the row's expiry (wall time in ms; None: never)."""

    __slots__ = ("columns", "expires_ms", "values")

    def __init__(self, columns: tuple[str, ...], values: tuple[Value, ...], expires_ms: int | None) -> None:
        self.columns = columns
        self.values = values
        self.expires_ms = expires_ms

    def live(self, now_ms: int) -> bool:
        return self.expires_ms is None or self.expires_ms > now_ms


class Shape:
    """What storing and reading a table's rows needs, worked out once per table: a row as read has its
    clustering columns, every regular column (null unless written) and every static column, in that
    order."""

    __slots__ = ("_columns", "clustering_key", "nulls", "static_columns", "table")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.clustering_key = table.clustering_key
        self.static_columns = table.static_column_order
        # A row as read before its values are filled in: every column null, in the order rows read.
        self.nulls: dict[str, Value] = dict.fromkeys(
            (*table.clustering_key, *table.regular_columns, *table.static_column_order)
        )
        self._columns: dict[tuple[str, ...], tuple[str, ...]] = {}

    def columns(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """The one tuple of these column names that rows keep (a table writes few sets of columns)."""
        return self._columns.setdefault(names, names)

    def stored(self, values: Mapping[str, Value], expires_ms: int | None) -> StoredRow:
        return StoredRow(self.columns(tuple(values)), tuple(values.values()), expires_ms)


class OneRow:
    """The rows of a partition of a table without clustering columns: at most one, its key `()` (what a
    dict does for the other tables, in a fraction of a dict's memory)."""

    __slots__ = ("_row",)

    def __init__(self) -> None:
        self._row: StoredRow | None = None

    def get(self, clustering: Key) -> StoredRow | None:
        return self._row

    def pop(self, clustering: Key, default: None = None) -> StoredRow | None:
        row, self._row = self._row, None
        return row

    def __setitem__(self, clustering: Key, row: StoredRow) -> None:
        self._row = row

    def __contains__(self, clustering: object) -> bool:
        return self._row is not None

    def __bool__(self) -> bool:
        return self._row is not None


class Partition:
    """`keys` holds the clustering keys of `rows` sorted (`SortedKeys`), so that range reads are
    bisections. Rows that expired stay until they are purged or overwritten; reads skip them."""

    __slots__ = ("_static_row", "keys", "rows", "shape", "static")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        # A table without clustering columns: one row per partition, never read by range.
        self.keys = SortedKeys() if shape.clustering_key else None
        self.rows: dict[Key, StoredRow] | OneRow = {} if shape.clustering_key else OneRow()
        self.static: dict[str, Value] | None = None
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
        for column, value in zip(stored.columns, stored.values, strict=True):
            values[column] = value
        if shape.static_columns:
            values.update(self._statics())
        return Row(values)

    def read_static(self) -> Row | None:
        """The static columns, or None when none holds a value (as Cassandra reads an unwritten one)."""
        if not self.static or not any(value is not None for value in self.static.values()):
            return None
        return Row(dict(self._statics()))

    def _statics(self) -> dict[str, Value]:
        if self._static_row is None:
            static = self.static or {}
            self._static_row = {c: static.get(c) for c in self.shape.static_columns}
        return self._static_row

    def put(self, clustering: Key, values: Mapping[str, Value], expires_ms: int | None, now_ms: int) -> None:
        """Write the listed columns and set the row's expiry; on a missing or expired row, a new row."""
        stored = self.live_row(clustering, now_ms)
        if stored is None:
            if self.keys is not None and clustering not in self.rows:
                self.keys.add(clustering)
            self.rows[clustering] = self.shape.stored(values, expires_ms)
            return
        merged = dict(zip(stored.columns, stored.values, strict=True))
        merged.update(values)
        self.rows[clustering] = self.shape.stored(merged, expires_ms)

    def delete(self, clustering: Key) -> None:
        if self.rows.pop(clustering, None) is not None and self.keys is not None:
            self.keys.remove(clustering)

    def write_static(self, values: Mapping[str, Value]) -> None:
        """Static columns never expire: a batch gives static values no TTL."""
        if self.static is None:
            self.static = {}
        self.static.update(values)
        self._static_row = None

    def in_range(self, lower: Bound | None, upper: Bound | None, reverse: bool) -> Iterator[Key]:
        """Clustering keys within the bounds, in clustering order or reversed. A bound compares the
        prefix of its own length, so an inclusive upper bound `(4,)` keeps every key starting with 4."""
        if self.keys is None:
            unreachable(f"{self.shape.table.name}: a range read needs clustering columns")
        return self.keys.between(
            (lower.values, lower.inclusive) if lower is not None else None,
            (upper.values, upper.inclusive) if upper is not None else None,
            reverse,
        )
