"""What reads ask for and what they return: rows, range queries and their pages."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import StrEnum

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract.tables import PartitionRef
from jubao_server.storage.contract.values import Key, Value


class Consistency(StrEnum):
    """`DEFAULT` is the backend's normal level (QUORUM on Cassandra); `SERIAL` also sees, and first
    completes, any conditional write in flight."""

    DEFAULT = "default"
    SERIAL = "serial"


@dataclasses.dataclass(frozen=True)
class Row:
    """A row as read: clustering columns, regular columns and the partition's static columns.

    Columns that were never written (or are null) read as None.
    """

    values: Mapping[str, Value]

    def __getitem__(self, column: str) -> Value:
        return self.values[column]

    def as_text(self, column: str) -> str:
        value = self.values[column]
        ensure(isinstance(value, str), f"{column} is not text")
        return value  # type: ignore[return-value]

    def as_int(self, column: str) -> int:
        value = self.values[column]
        ensure(isinstance(value, int) and not isinstance(value, bool), f"{column} is not an integer")
        return value  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Bound:
    """A clustering bound: a prefix of the clustering key, inclusive or exclusive."""

    values: Key
    inclusive: bool

    @property
    def shape(self) -> BoundShape:
        return len(self.values), self.inclusive


# What the statement of a range read depends on beyond its table (its values are parameters): each
# bound's length and inclusiveness (None when there is no bound), and whether the order is reversed.
BoundShape = tuple[int, bool]
QueryShape = tuple[BoundShape | None, BoundShape | None, bool]


@dataclasses.dataclass(frozen=True)
class RowQuery:
    """A range read inside one partition, in clustering order (or reversed), at most `limit` rows."""

    partition: PartitionRef
    lower: Bound | None = None
    upper: Bound | None = None
    reverse: bool = False
    limit: int = limits.page_size_default
    consistency: Consistency = Consistency.DEFAULT

    @property
    def shape(self) -> QueryShape:
        lower = None if self.lower is None else self.lower.shape
        upper = None if self.upper is None else self.upper.shape
        return lower, upper, self.reverse

    def __post_init__(self) -> None:
        table = self.partition.table
        ensure(bool(table.clustering_key), f"{table.name}: range read needs clustering columns")
        ensure(0 < self.limit <= limits.storage_page_rows_max, f"{table.name}: bad limit {self.limit}")
        for bound in (self.lower, self.upper):
            if bound is not None:
                ensure(0 < len(bound.values) <= len(table.clustering_key), f"{table.name}: bad bound arity")

    def after(self, clustering: Key) -> RowQuery:
        """The query for the next page, which starts after the row `clustering`."""
        bound = Bound(clustering, inclusive=False)
        if self.reverse:
            return dataclasses.replace(self, upper=bound)
        return dataclasses.replace(self, lower=bound)


@dataclasses.dataclass(frozen=True)
class Page:
    rows: tuple[Row, ...]
    # Clustering key of the last row, present when more rows may follow: pass to `RowQuery.after`.
    next_after: Key | None


@dataclasses.dataclass(frozen=True)
class ColumnPage:
    """A page read as columns (`StorageBackend.read_columns`), for bulk reads that build columns of their
    own (Arrow): each named column's values in row order."""

    columns: Mapping[str, list[Value]]
    row_count: int
    # As `Page.next_after`.
    next_after: Key | None
