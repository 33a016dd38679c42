"""`MemoryBackend`: the storage contract in memory, deterministic (see the package doc)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
from collections.abc import Sequence

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.invariants import ensure, unreachable
from jubao_server.storage.contract import (
    NO_FAULTS,
    Batch,
    BatchOutcome,
    BulkPut,
    Consistency,
    Faults,
    Following,
    Key,
    MigrationSet,
    Page,
    PartitionRef,
    Row,
    RowQuery,
    StorageBackend,
    StorageError,
    Table,
    Value,
)
from jubao_server.storage.contract.conditions import conditioned_rows, conditions_hold, failed_outcome
from jubao_server.storage.contract.migrations import Recorded, carried_over, check_unchanged
from jubao_server.storage.contract.unknown import write_conditional
from jubao_server.storage.memory.partition import Partition, Shape
from jubao_server.storage.memory.schema import load_sets

PartitionId = tuple[Value, ...]  # scope, then the partition key


# A row that expires: (expires_ms, sequence, table, partition, clustering key); `sequence` orders equal
# times by when they were written (and, being unique, keeps the comparison from reaching the rest).
_Expiry = tuple[int, int, str, PartitionId, Key]


@dataclasses.dataclass
class _TableData:
    """A table created by a schema file; `shape` is worked out from its declared `Table` on first use."""

    shape: Shape | None = None
    partitions: dict[PartitionId, Partition] = dataclasses.field(default_factory=dict)


class MemoryBackend(StorageBackend):
    name = "memory"

    def __init__(self, clock: Clock, *, faults: Faults = NO_FAULTS, guarded_writes: bool = False) -> None:
        """`guarded_writes`: whether `write_after` takes guards, as SQLite's does (applied with the batch
        in one step); without, its following batches are written after the batch, as on Cassandra."""
        self._clock = clock
        self._faults = faults
        self.guarded_writes = guarded_writes
        self._tables: dict[str, _TableData] = {}
        self._applied: dict[tuple[str, int], Recorded] = {}  # by (set, version)
        self._expiries: list[_Expiry] = []  # a heap
        self._expiry_sequence = 0
        self._closed = False

    async def migrate(self, sets: Sequence[MigrationSet]) -> list[str]:
        await self._operation()
        files = load_sets(sets)
        applied: list[str] = []
        for file, names in files:
            recorded = self._applied.get((file.set_name, file.version))
            if recorded is not None:
                check_unchanged(file, recorded)
                continue
            former = None if file.formerly is None else self._applied.get((file.formerly, file.version))
            if former is not None and carried_over(file, former):
                self._applied[(file.set_name, file.version)] = former
                continue
            for name in names:
                self._tables.setdefault(name, _TableData())
            self._applied[(file.set_name, file.version)] = Recorded(
                file.name, file.checksum, self._clock.wall_ms()
            )
            applied.append(file.label)
        return applied

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the tables the applied schema files created, in the order they were created."""
        return tuple(self._tables)

    async def read_row(
        self, partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._operation()
        table = partition.table
        ensure(len(clustering) == len(table.clustering_key), f"{table.name}: wrong clustering arity")
        return self._current_row(partition, clustering, self._clock.wall_ms())

    async def read_static(
        self, partition: PartitionRef, consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._operation()
        return self._current_static(partition)

    async def read_page(self, query: RowQuery) -> Page:
        await self._operation()
        stored = self._partition(query.partition)
        if stored is None:
            return Page((), next_after=None)
        now_ms = self._clock.wall_ms()
        found: list[tuple[Key, Row]] = []
        for key in stored.in_range(query.lower, query.upper, query.reverse):
            row = stored.live_row(key, now_ms)
            if row is None:
                continue
            if len(found) == query.limit:
                return Page(tuple(r for _, r in found), next_after=found[-1][0])
            found.append((key, stored.read(key, row)))
        return Page(tuple(r for _, r in found), next_after=None)

    async def write(self, batch: Batch) -> BatchOutcome:
        await self._faults.before_operation()
        if not batch.conditional:
            return await self._write_once(batch)
        return await write_conditional(self, self._faults, batch, self._write_once)

    async def write_after(
        self, batch: Batch, following: Sequence[Following], guards: Sequence[Batch] = ()
    ) -> BatchOutcome:
        """With guards (`guarded_writes`), the batch, its guards and what follows it are one step."""
        if not guards:
            return await super().write_after(batch, following)
        ensure(self.guarded_writes, "this backend writes no guards (guarded_writes)")
        ensure(batch.conditional, "a guarded batch is conditional")
        ensure(not any(b.conditional for b in following), "following batches are unconditional")
        await self._faults.before_operation()
        attempt = functools.partial(self._write_once, following=tuple(following), guards=tuple(guards))
        return await write_conditional(self, self._faults, batch, attempt)

    async def write_following(self, following: Sequence[Following]) -> None:
        """As on Cassandra, the following writes after the batch (`write_after`); one after the other,
        each batch and each bulk put its own operation (its fault hook, its yield), with no task started
        for each."""
        for derived in following:
            if isinstance(derived, Batch):
                await self.write(derived)
                continue
            await self._operation()
            self._apply(derived, self._clock.wall_ms())

    async def _write_once(
        self, batch: Batch, following: tuple[Following, ...] = (), guards: tuple[Batch, ...] = ()
    ) -> BatchOutcome:
        """Yield once, then check the conditions (the batch's, then its guards') and apply the batch, its
        guards and `following` in one step, or nothing."""
        await self._yield()
        now_ms = self._clock.wall_ms()
        if batch.conditional:
            partition = batch.partition
            rows = {key: self._current_row(partition, key, now_ms) for key in conditioned_rows(batch)}
            static = self._current_static(partition)
            if not conditions_hold(batch, rows, static):
                return failed_outcome(batch, rows, static)
        failed = self._failed_guards(guards, now_ms) if guards else ()
        if failed:
            return BatchOutcome(applied=False, failed_guards=failed)
        for applied in (batch, *guards, *following):
            self._apply(applied, now_ms)
        return BatchOutcome(applied=True)

    def _failed_guards(self, guards: tuple[Batch, ...], now_ms: int) -> tuple[int, ...]:
        """The guards whose conditions do not hold, each checked on the rows as the guards before it
        would leave them (nothing is written here)."""
        written: dict[tuple[str, str, Key, Key], Row | None] = {}

        def seen(ref: PartitionRef, key: Key) -> Row | None:
            place = (ref.table.name, ref.scope, ref.key, key)
            return written[place] if place in written else self._current_row(ref, key, now_ms)

        failed: list[int] = []
        for index, guard in enumerate(guards):
            ref = guard.partition
            ensure(not guard.static_values, "a guard writes no static columns")
            current = {key: seen(ref, key) for key in conditioned_rows(guard)}
            if not conditions_hold(guard, current, self._current_static(ref)):
                failed.append(index)
                continue
            for put in guard.puts:
                before = seen(ref, put.clustering)
                merged = {**(before.values if before is not None else {}), **put.values}
                written[(ref.table.name, ref.scope, ref.key, put.clustering)] = Row(merged)
            for delete in guard.deletes:
                written[(ref.table.name, ref.scope, ref.key, delete.clustering)] = None
        return tuple(failed)

    async def ready(self) -> bool:
        try:
            await self._operation()
        except StorageError:
            return False
        return True

    async def close(self) -> None:
        """Closing drops every row: nothing outlives the backend."""
        self._closed = True
        self._tables.clear()
        self._expiries.clear()

    async def _operation(self) -> None:
        await self._faults.before_operation()
        await self._yield()

    async def _yield(self) -> None:
        """Every operation lets the other tasks run once, as a real store's I/O would, so concurrent
        callers interleave (deterministically: the loop runs ready tasks in the order they became so)."""
        await asyncio.sleep(0)
        if self._closed:
            raise StorageError("memory backend is closed")

    def _data(self, table: Table) -> tuple[_TableData, Shape]:
        data = self._tables.get(table.name)
        if data is None:
            unreachable(f"{table.name}: no such table (no schema file created it: not migrated?)")
        if data.shape is None:
            data.shape = Shape(table)
        shape = data.shape
        ensure(shape.table is table or shape.table == table, f"{table.name}: declared with two shapes")
        return data, shape

    def _partition(self, ref: PartitionRef) -> Partition | None:
        return self._data(ref.table)[0].partitions.get((ref.scope, *ref.key))

    def _current_row(self, ref: PartitionRef, clustering: Key, now_ms: int) -> Row | None:
        stored = self._partition(ref)
        row = None if stored is None else stored.live_row(clustering, now_ms)
        if stored is None or row is None:
            return None
        return stored.read(clustering, row)

    def _current_static(self, ref: PartitionRef) -> Row | None:
        stored = self._partition(ref)
        return None if stored is None else stored.read_static()

    def _apply(self, write: Following, now_ms: int) -> None:
        if isinstance(write, BulkPut):
            self._apply_bulk(write, now_ms)
        else:
            self._apply_batch(write, now_ms)
        self._purge(now_ms)

    def _apply_batch(self, batch: Batch, now_ms: int) -> None:
        ref = batch.partition
        data, shape = self._data(ref.table)
        partitions = data.partitions
        partition_id = (ref.scope, *ref.key)
        stored = _written_partition(partitions, partition_id, shape)
        for put in batch.puts:
            expires_ms = None if put.ttl_s is None else now_ms + put.ttl_s * 1000
            stored.put(put.clustering, put.values, expires_ms, now_ms)
            if expires_ms is not None:
                self._expiry_sequence += 1
                expiry = (expires_ms, self._expiry_sequence, ref.table.name, partition_id, put.clustering)
                heapq.heappush(self._expiries, expiry)
        for delete in batch.deletes:
            stored.delete(delete.clustering)
        if batch.static_values:
            stored.write_static(batch.static_values)
        if stored.empty:
            del partitions[partition_id]

    def _purge(self, now_ms: int) -> None:
        """Drop up to `ttl_sweep_rows_max` rows expired at `now_ms`, the earliest first. An entry whose
        row was rewritten since (another expiry, or none) or deleted is only dropped from the heap."""
        for _ in range(limits.ttl_sweep_rows_max):
            if not self._expiries or self._expiries[0][0] > now_ms:
                return
            expires_ms, _, table, partition_id, clustering = heapq.heappop(self._expiries)
            partitions = self._tables[table].partitions
            stored = partitions.get(partition_id)
            row = None if stored is None else stored.rows.get(clustering)
            if stored is None or row is None or row.expires_ms != expires_ms:
                continue
            stored.delete(clustering)
            if stored.empty:
                del partitions[partition_id]

    def _apply_bulk(self, bulk: BulkPut, now_ms: int) -> None:
        """A bulk put's rows, each in its partition (none expires)."""
        data, shape = self._data(bulk.table)
        partitions, scope, columns = data.partitions, bulk.scope, bulk.columns
        for partition_key, clustering, values in bulk.rows:
            stored = _written_partition(partitions, (scope, *partition_key), shape)
            stored.put(clustering, dict(zip(columns, values, strict=True)), None, now_ms)


def _written_partition(
    partitions: dict[PartitionId, Partition], partition_id: PartitionId, shape: Shape
) -> Partition:
    """The stored partition a write goes to, new and empty when there is none yet."""
    stored = partitions.get(partition_id)
    if stored is None:
        stored = partitions[partition_id] = Partition(shape)
    return stored
