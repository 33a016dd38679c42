"""The storage contract: what every backend offers and every domain store may rely on.

It is modelled on what Apache Cassandra does well, so that nothing built on it depends on a feature
Cassandra lacks:

* A row is addressed by a partition key plus clustering columns. Every partition key starts with the
  implicit `scope` column: the tenant id for tenant data, `PLATFORM_SCOPE` for the platform's own data
  (the tenant registry). Tenant ids cannot start with `~`, so the scopes never meet.
* The only atomic multi-row write is a `Batch` on one partition of one table. It may carry conditions
  (compare-and-set, like a Cassandra lightweight transaction): either every condition holds and every
  write is applied, or nothing is written and the outcome shows the current values of the rows the
  conditions named.
* Reads are point reads (`read_row`, `read_static`) and paged range reads inside one partition
  (`read_page`), ordered by the clustering columns. There are no joins, no cross-partition transactions
  and no secondary-index scans.
* A row written by a `Put` may carry a TTL in seconds; once it has passed, the row is invisible.
* Static columns (Cassandra `STATIC`) belong to the whole partition: a conditional batch may compare
  them and write clustered rows in the same atomic step (a balance and its journal rows, an owner epoch
  and the changes it fences).

Unknown outcomes: a conditional batch whose answer did not arrive in time (a Cassandra `WriteTimeout` of
type CAS, or a lost reply) may or may not have been applied. Backends never hand that doubt to the
caller: they read the named rows back at SERIAL consistency, which also completes any Paxos round in
flight, and report `applied=True` if every written cell now has the value the batch wrote (or the row is
gone for a `Delete`). When the batch is not visible and its conditions still hold, it certainly did not
apply and is retried, at most `cas_unknown_retries_max` times. For the comparison to be sound, a
conditional batch must write at least one value that no other writer would write (a new version number,
a request id, a fencing epoch); `Batch` checks that a conditional batch writes something.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import functools
import re
import typing
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Final

from jubao_server import limits
from jubao_server.invariants import ensure

Value = str | int | bytes | bool | None
Key = tuple[Value, ...]

SCOPE_COLUMN: Final = "scope"
PLATFORM_SCOPE: Final = "~platform"
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
cas_unknown_retries_max: Final = 3

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class ColumnType(StrEnum):
    TEXT = "text"
    BIGINT = "bigint"
    BLOB = "blob"
    BOOLEAN = "boolean"


class Consistency(StrEnum):
    """`DEFAULT` is the backend's normal level (QUORUM on Cassandra); `SERIAL` also sees, and first
    completes, any conditional write in flight."""

    DEFAULT = "default"
    SERIAL = "serial"


@dataclasses.dataclass(frozen=True)
class Table:
    """A table's shape, declared by the domain package that owns it.

    `columns` names every column but `scope`, keys included. The backend schema files (SQL, CQL) must
    create exactly this shape; the conformance suite checks that they do.
    """

    name: str
    partition_key: tuple[str, ...]
    columns: Mapping[str, ColumnType]
    clustering_key: tuple[str, ...] = ()
    static_columns: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        ensure(bool(_IDENTIFIER.match(self.name)), f"bad table name {self.name!r}")
        ensure(SCOPE_COLUMN not in self.columns, f"{self.name}: 'scope' is implicit")
        for column in self.columns:
            ensure(bool(_IDENTIFIER.match(column)), f"{self.name}: bad column name {column!r}")
        keys = self.partition_key + self.clustering_key
        ensure(len(set(keys)) == len(keys), f"{self.name}: repeated key column")
        for column in keys:
            ensure(column in self.columns, f"{self.name}: key column {column} has no type")
        ensure(self.static_columns <= set(self.columns), f"{self.name}: unknown static column")
        ensure(not self.static_columns & set(keys), f"{self.name}: a key column cannot be static")
        ensure(
            not self.static_columns or bool(self.clustering_key),
            f"{self.name}: static columns need clustering columns",
        )

    @functools.cached_property
    def regular_columns(self) -> tuple[str, ...]:
        keys = set(self.partition_key) | set(self.clustering_key)
        return tuple(c for c in self.columns if c not in keys and c not in self.static_columns)

    @functools.cached_property
    def regular_column_set(self) -> frozenset[str]:
        return frozenset(self.regular_columns)

    def partition(self, scope: str, *key: Value) -> PartitionRef:
        return PartitionRef(self, scope, tuple(key))


@dataclasses.dataclass(frozen=True)
class PartitionRef:
    table: Table
    scope: str
    key: Key

    def __post_init__(self) -> None:
        ensure(bool(self.scope), "empty scope")
        ensure(
            len(self.key) == len(self.table.partition_key),
            f"{self.table.name}: partition key needs {len(self.table.partition_key)} values",
        )
        ensure(isinstance(self.scope, str), "scope must be text")
        for column, value in zip(self.table.partition_key, self.key, strict=True):
            _check_key_value(value)
            ensure(
                check_value(self.table.columns[column], value), f"{self.table.name}: bad value for {column}"
            )


def _check_key_value(value: Value) -> None:
    ensure(value is not None, "a key value cannot be null")
    if isinstance(value, str | bytes):
        size = len(value.encode()) if isinstance(value, str) else len(value)
        ensure(size <= limits.key_component_length_max_bytes, "key component too long")
    if isinstance(value, int) and not isinstance(value, bool):
        ensure(INT64_MIN <= value <= INT64_MAX, "key value outside int64")


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
class Put:
    """Insert or overwrite one clustered row: the listed regular columns are written, the others keep
    their values. `ttl_s` makes the written cells expire; a row whose cells all expired is gone."""

    clustering: Key
    values: Mapping[str, Value]
    ttl_s: int | None = None


@dataclasses.dataclass(frozen=True)
class Delete:
    clustering: Key


@dataclasses.dataclass(frozen=True)
class RowAbsent:
    """The row must not exist (CQL `IF NOT EXISTS`). It must be the target of a `Put` in the batch."""

    clustering: Key


@dataclasses.dataclass(frozen=True)
class RowMatches:
    """Each listed column must equal the given value (None: the cell is null). As in CQL, the cells of a
    missing row read as null, so a comparison only with None also holds for a missing row, and a
    comparison with any value needs the row. An empty `expected` means "the row exists" (CQL
    `IF EXISTS`). It must be the target of a `Put` or a `Delete` in the batch."""

    clustering: Key
    expected: Mapping[str, Value]


@dataclasses.dataclass(frozen=True)
class StaticMatches:
    """The partition's static columns must equal the given values (None: null or no partition yet).
    The batch must carry `static_values`."""

    expected: Mapping[str, Value]


Condition = RowAbsent | RowMatches | StaticMatches


@dataclasses.dataclass(frozen=True)
class Batch:
    """An atomic write to one partition: every write applies or none does."""

    partition: PartitionRef
    puts: tuple[Put, ...] = ()
    deletes: tuple[Delete, ...] = ()
    static_values: Mapping[str, Value] | None = None
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        table = self.partition.table
        ensure(bool(self.puts or self.deletes or self.static_values), f"{table.name}: empty batch")
        ensure(self.row_count <= limits.batch_rows_max, f"{table.name}: batch over batch_rows_max")
        written: list[Key] = []
        for put in self.puts:
            self._check_clustering(put.clustering)
            ensure(bool(put.values) or not table.regular_columns, f"{table.name}: put writes nothing")
            ensure(
                table.regular_column_set.issuperset(put.values), f"{table.name}: writes a non-regular column"
            )
            ensure(put.ttl_s is None or 0 < put.ttl_s <= limits.row_ttl_s_max, f"{table.name}: bad ttl_s")
            written.append(put.clustering)
        for delete in self.deletes:
            self._check_clustering(delete.clustering)
            written.append(delete.clustering)
        ensure(len(set(written)) == len(written), f"{table.name}: a row is written twice in one batch")
        if self.static_values is not None:
            ensure(bool(self.static_values), f"{table.name}: empty static write")
            ensure(set(self.static_values) <= table.static_columns, f"{table.name}: not a static column")
        self._check_values()
        self._check_conditions(set(written))
        ensure(
            not self.conditions or bool(self.puts or self.static_values),
            f"{table.name}: a conditional batch must write a value (see unknown outcomes)",
        )

    def _check_values(self) -> None:
        table = self.partition.table
        size_bytes = 0
        for values in [p.values for p in self.puts] + [self.static_values or {}]:
            for column, value in values.items():
                ensure(check_value(table.columns[column], value), f"{table.name}: bad value for {column}")
                size_bytes += len(value) if isinstance(value, str | bytes) else 8
        ensure(size_bytes <= limits.batch_bytes_max, f"{table.name}: batch over batch_bytes_max")

    def _check_clustering(self, clustering: Key) -> None:
        table = self.partition.table
        ensure(len(clustering) == len(table.clustering_key), f"{table.name}: wrong clustering arity")
        for column, value in zip(table.clustering_key, clustering, strict=True):
            _check_key_value(value)
            ensure(check_value(table.columns[column], value), f"{table.name}: bad value for {column}")

    def _check_conditions(self, written: set[Key]) -> None:
        table = self.partition.table
        put_rows = {p.clustering for p in self.puts}
        conditioned: set[Key] = set()
        statics = 0
        for condition in self.conditions:
            if isinstance(condition, StaticMatches):
                statics += 1
                ensure(self.static_values is not None, f"{table.name}: StaticMatches needs static_values")
                ensure(set(condition.expected) <= table.static_columns, f"{table.name}: not static")
                continue
            ensure(condition.clustering not in conditioned, f"{table.name}: two conditions on one row")
            conditioned.add(condition.clustering)
            if isinstance(condition, RowAbsent):
                ensure(condition.clustering in put_rows, f"{table.name}: RowAbsent needs a Put of the row")
            else:
                ensure(condition.clustering in written, f"{table.name}: RowMatches needs a write of the row")
                for column in condition.expected:
                    ensure(column in table.regular_column_set, f"{table.name}: cannot compare {column}")
        ensure(statics <= 1, f"{table.name}: two static conditions")

    @property
    def row_count(self) -> int:
        return len(self.puts) + len(self.deletes) + (1 if self.static_values else 0)

    @property
    def conditional(self) -> bool:
        return bool(self.conditions)


@dataclasses.dataclass(frozen=True)
class BatchOutcome:
    """`applied` tells whether the batch was written. When it was not, `current_rows` maps the clustering
    key of each row named by a condition to its current value (None when absent), and `current_static`
    holds the partition's static columns (None when there are none). `resolved_unknown` is True when the
    answer came from resolving a timed-out conditional write."""

    applied: bool
    current_rows: Mapping[Key, Row | None] = dataclasses.field(default_factory=dict)
    current_static: Row | None = None
    resolved_unknown: bool = False


@dataclasses.dataclass(frozen=True)
class Bound:
    """A clustering bound: a prefix of the clustering key, inclusive or exclusive."""

    values: Key
    inclusive: bool


@dataclasses.dataclass(frozen=True)
class RowQuery:
    """A range read inside one partition, in clustering order (or reversed), at most `limit` rows."""

    partition: PartitionRef
    lower: Bound | None = None
    upper: Bound | None = None
    reverse: bool = False
    limit: int = limits.page_size_default
    consistency: Consistency = Consistency.DEFAULT

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
class MigrationSet:
    """A named folder of versioned schema files `NNNN_description.sql` (or `.cql`), applied in order,
    each once. An applied file may not change: its checksum is recorded and checked."""

    name: str
    directory: Path


class StorageError(Exception):
    """The backend could not answer (unreachable, overloaded, timed out on a read or a plain write).
    The gRPC layer maps it to UNAVAILABLE; the caller may retry with the same request id."""


class MigrationError(Exception):
    """A schema file is malformed, or an applied one changed."""


class StorageBackend(abc.ABC):
    """One storage backend. All methods are coroutines; backends bound their own concurrency."""

    name: str

    @abc.abstractmethod
    async def migrate(self, sets: Sequence[MigrationSet]) -> list[str]:
        """Apply the files not applied yet; return their names. Safe to run concurrently and repeatedly."""

    @abc.abstractmethod
    async def read_row(
        self, partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        """One row by its full primary key, with the partition's static columns."""

    @abc.abstractmethod
    async def read_static(
        self, partition: PartitionRef, consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        """The partition's static columns, or None if none was ever written."""

    @abc.abstractmethod
    async def read_page(self, query: RowQuery) -> Page:
        """Rows of one partition in clustering order within the bounds."""

    @abc.abstractmethod
    async def write(self, batch: Batch) -> BatchOutcome:
        """Apply the batch atomically. An unconditional batch always applies (or raises StorageError)."""

    async def write_after(self, batch: Batch, following: Sequence[Batch]) -> BatchOutcome:
        """Apply `batch`; when it applies, also apply `following`, unconditional batches of other
        partitions derived from it (a journal materialized from the records `batch` commits). Writing a
        following batch twice must be harmless. A backend may write them in the same transaction
        (SQLite does: all or nothing, one commit) or after `batch` (Cassandra: a crash in between leaves
        them unwritten, so the caller must be able to write them again from what `batch` stored). Raises
        StorageError when a following batch fails; `batch` may then have applied."""
        ensure(not any(b.conditional for b in following), "following batches are unconditional")
        outcome = await self.write(batch)
        if outcome.applied:
            await write_all(self, following)
        return outcome

    @abc.abstractmethod
    async def ready(self) -> bool:
        """True when the backend answers reads and writes."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""


async def write_all(backend: StorageBackend, batches: Sequence[Batch]) -> None:
    """Write unconditional batches, at most `storage_writes_in_flight_max` at once."""
    step = limits.storage_writes_in_flight_max
    for start in range(0, len(batches), step):
        await asyncio.gather(*(backend.write(b) for b in batches[start : start + step]))


def batch_visible(batch: Batch, rows: Mapping[Key, Row | None], static: Row | None) -> bool:
    """Whether the state read back shows every write of `batch` (the unknown-outcome test)."""
    for put in batch.puts:
        row = rows.get(put.clustering)
        if row is None or any(row.values.get(c) != v for c, v in put.values.items()):
            return False
    if any(rows.get(d.clustering) is not None for d in batch.deletes):
        return False
    if batch.static_values:
        if static is None:
            return False
        return all(static.values.get(c) == v for c, v in batch.static_values.items())
    return True


def conditions_hold(batch: Batch, rows: Mapping[Key, Row | None], static: Row | None) -> bool:
    """Whether the batch's conditions hold on the given current state."""
    for condition in batch.conditions:
        if isinstance(condition, StaticMatches):
            current = static.values if static is not None else {}
            if any(current.get(c) != v for c, v in condition.expected.items()):
                return False
            continue
        row = rows.get(condition.clustering)
        if isinstance(condition, RowAbsent):
            if row is not None:
                return False
        elif not row_matches(condition, row):
            return False
    return True


def row_matches(condition: RowMatches, row: Row | None) -> bool:
    """CQL semantics: `IF EXISTS` needs the row; compared cells of a missing row read as null."""
    if not condition.expected:
        return row is not None
    current = row.values if row is not None else {}
    return all(current.get(c) == v for c, v in condition.expected.items())


def touched_rows(batch: Batch) -> tuple[Key, ...]:
    """Clustering keys of every row the batch writes or names in a condition."""
    keys: dict[Key, None] = {}
    for put in batch.puts:
        keys[put.clustering] = None
    for delete in batch.deletes:
        keys[delete.clustering] = None
    for condition in batch.conditions:
        if not isinstance(condition, StaticMatches):
            keys[condition.clustering] = None
    return tuple(keys)


def check_value(column_type: ColumnType, value: Value) -> bool:
    """Whether `value` fits `column_type` (None fits every type)."""
    if value is None:
        return True
    match column_type:
        case ColumnType.TEXT:
            return isinstance(value, str)
        case ColumnType.BIGINT:
            return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
        case ColumnType.BLOB:
            return isinstance(value, bytes)
        case ColumnType.BOOLEAN:
            return isinstance(value, bool)


class UnknownOutcome(Exception):
    """Raised inside a backend when a conditional write was sent but its answer was lost. It never
    leaves the backend: `resolve_unknown_outcome` turns it into a definite `BatchOutcome`."""


@dataclasses.dataclass
class FaultPlan:
    """Faults a test or the simulator arms on a backend. `conditional_timeouts` next conditional writes
    lose their answer; with `applied_before_timeout` the write reaches storage first, else it never does.
    `storage_errors` next operations of any kind fail with StorageError before touching storage."""

    conditional_timeouts: int = 0
    applied_before_timeout: bool = True
    storage_errors: int = 0

    def take_conditional_timeout(self) -> bool:
        if self.conditional_timeouts <= 0:
            return False
        self.conditional_timeouts -= 1
        return True

    def raise_storage_error(self) -> None:
        if self.storage_errors > 0:
            self.storage_errors -= 1
            raise StorageError("injected storage fault")


async def read_touched(backend: StorageBackend, batch: Batch) -> tuple[dict[Key, Row | None], Row | None]:
    """Read, at SERIAL, every row the batch touches and the partition's static columns."""
    keys = touched_rows(batch)
    reads = [backend.read_row(batch.partition, key, Consistency.SERIAL) for key in keys]
    rows = dict(zip(keys, await asyncio.gather(*reads), strict=True))
    static = None
    if batch.partition.table.static_columns:
        static = await backend.read_static(batch.partition, Consistency.SERIAL)
    return rows, static


def failed_outcome(
    batch: Batch, rows: Mapping[Key, Row | None], static: Row | None, resolved_unknown: bool = False
) -> BatchOutcome:
    named = {
        c.clustering: rows.get(c.clustering) for c in batch.conditions if not isinstance(c, StaticMatches)
    }
    return BatchOutcome(
        applied=False, current_rows=named, current_static=static, resolved_unknown=resolved_unknown
    )


async def resolve_unknown_outcome(
    backend: StorageBackend, batch: Batch, resend: WriteAttempt
) -> BatchOutcome:
    """Turn a conditional write whose answer was lost into a definite outcome (see the module doc)."""
    for _ in range(cas_unknown_retries_max):
        rows, static = await read_touched(backend, batch)
        if batch_visible(batch, rows, static):
            return BatchOutcome(applied=True, resolved_unknown=True)
        if not conditions_hold(batch, rows, static):
            return failed_outcome(batch, rows, static, resolved_unknown=True)
        try:
            outcome = await resend(batch)
        except UnknownOutcome:
            continue
        return dataclasses.replace(outcome, resolved_unknown=True)
    raise StorageError(f"{batch.partition.table.name}: conditional write outcome still unknown")


class WriteAttempt(typing.Protocol):
    async def __call__(self, batch: Batch, /) -> BatchOutcome: ...
