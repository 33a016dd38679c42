"""The base class of every backend."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract.batch import Batch, BatchOutcome
from jubao_server.storage.contract.bulk import BulkPut, Following
from jubao_server.storage.contract.errors import FollowingWriteError, StorageError
from jubao_server.storage.contract.migrations import MigrationSet
from jubao_server.storage.contract.reads import ColumnPage, Consistency, Page, Row, RowQuery
from jubao_server.storage.contract.tables import PartitionRef
from jubao_server.storage.contract.values import Key

T = TypeVar("T")


class StorageBackend(abc.ABC):
    """One storage backend. All methods are coroutines; backends bound their own concurrency."""

    name: str
    # Whether `write_after` takes guards: conditional batches of other partitions written in the same
    # transaction as the batch (SQLite: one database; Cassandra cannot, its conditional batches are
    # single-partition).
    guarded_writes: bool = False

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

    async def read_columns(self, query: RowQuery, names: Sequence[str]) -> ColumnPage:
        """The page `read_page` reads, as the columns `names`. A backend may build them straight from its
        driver's records, without a `Row` per row (SQLite and Cassandra do)."""
        page = await self.read_page(query)
        columns = {name: [row.values[name] for row in page.rows] for name in names}
        return ColumnPage(columns, len(page.rows), page.next_after)

    @abc.abstractmethod
    async def write(self, batch: Batch) -> BatchOutcome:
        """Apply the batch atomically. An unconditional batch always applies (or raises StorageError)."""

    async def write_each(self, batches: Sequence[Batch]) -> list[BatchOutcome | StorageError]:
        """Write independent batches (at most `storage_write_each_batches_max`; each on one partition, each
        conditional or not), as if by `write` one after the other in order: each is applied, or not, by
        its own conditions as they stand after the batches before it (a later batch of the same partition
        sees what an earlier one wrote). Returns each batch's result in order: its outcome, or the
        StorageError that failed it alone (it may then have applied, as any write whose answer was lost);
        the others go on. Not atomic across batches, and not isolated: a reader may see a later batch of
        another partition before an earlier one. Any other exception is a bug and fails the whole call.

        Each batch is an operation of its own for the fault hooks, and a conditional one whose answer was
        lost is resolved on its own (`unknown.py`; on SQLite once the others were written, so it comes out
        as if written after them). This default writes the batches of each partition in
        order and the partitions concurrently, `storage_writes_in_flight_max` at once (Cassandra: a
        lightweight transaction each, which batches of several partitions cannot share); SQLite sends the
        whole list to its writer in one go."""
        ensure(len(batches) <= limits.storage_write_each_batches_max, "write_each takes a bounded list")
        results: list[BatchOutcome | StorageError | None] = [None] * len(batches)
        lanes: dict[tuple[str, str, Key], list[int]] = {}
        for index, batch in enumerate(batches):
            partition = batch.partition
            lanes.setdefault((partition.table.name, partition.scope, partition.key), []).append(index)
        waiting = iter(lanes.values())

        async def write_lanes() -> None:
            """One of the writers in flight: takes the next partition's batches until none is left."""
            for indexes in waiting:
                for index in indexes:
                    try:
                        results[index] = await self.write(batches[index])
                    except StorageError as error:
                        results[index] = error

        writers = min(limits.storage_writes_in_flight_max, len(lanes))
        await asyncio.gather(*(write_lanes() for _ in range(writers)))
        return every_result(results)

    async def write_after(
        self, batch: Batch, following: Sequence[Following], guards: Sequence[Batch] = ()
    ) -> BatchOutcome:
        """Apply `batch`; when it applies, also apply `following`, unconditional batches of other
        partitions or bulk puts (`BulkPut`), derived from it (a journal materialized from the records
        `batch` commits). Writing a following write twice must be harmless. A backend may write them in
        the same transaction (SQLite does: all or nothing, one commit) or after `batch` (Cassandra: a
        crash in between leaves them unwritten, so the caller must be able to write them again from what
        `batch` stored). Raises FollowingWriteError when `batch` applied and a following write failed,
        StorageError when `batch` itself failed (it may then have applied, as any write whose answer was
        lost).

        `guards` (only where `guarded_writes`; `batch` then conditional): conditional batches of other
        partitions, applied with `batch` in one transaction, each after the guards before it (so two
        guards of one row: the second sees the first's write). When `batch`'s conditions hold and a
        guard's do not, nothing is written and the outcome names the failed guards (`failed_guards`;
        those after a failed guard are checked too, so that one answer names every guard that fails).
        A lost answer is resolved on `batch` alone: its guards applied exactly when it did."""
        ensure(not guards, "this backend writes no guards (guarded_writes)")
        ensure(not any(b.conditional for b in following), "following batches are unconditional")
        outcome = await self.write(batch)
        if outcome.applied:
            try:
                await self.write_following(following)
            except StorageError as error:
                raise FollowingWriteError(
                    f"{batch.partition.table.name}: applied, not what follows"
                ) from error
        return outcome

    async def write_following(self, following: Sequence[Following]) -> None:
        """Write unconditional derived writes alone: how `write_after` writes those that follow an
        applied batch, and how a shard writes its journal again after a crash. Not atomic. This default
        writes a bulk put as batches of one partition each (`BulkPut.batches`), several in flight."""
        batches: list[Batch] = []
        for write in following:
            batches += write.batches() if isinstance(write, BulkPut) else (write,)
        await write_all(self, batches)

    @abc.abstractmethod
    async def ready(self) -> bool:
        """True when the backend answers reads and writes."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""


def every_result(results: Sequence[BatchOutcome | StorageError | None]) -> list[BatchOutcome | StorageError]:
    """The results of a `write_each`, once every batch has one."""
    written = [result for result in results if result is not None]
    ensure(len(written) == len(results), "every batch of a write_each has its result")
    return written


async def write_all(backend: StorageBackend, batches: Sequence[Batch]) -> None:
    """Write unconditional batches, at most `storage_writes_in_flight_max` at once."""
    await send_in_steps(batches, backend.write)


async def send_in_steps(items: Sequence[T], send: Callable[[T], Awaitable[object]]) -> None:
    """`send` every item, `storage_writes_in_flight_max` at once: each step's sends together, then the
    next step's."""
    step = limits.storage_writes_in_flight_max
    for start in range(0, len(items), step):
        await asyncio.gather(*(send(item) for item in items[start : start + step]))


async def read_pages(
    backend: StorageBackend, query: RowQuery, pages_max: int, too_long: Callable[[], Exception]
) -> AsyncIterator[Page]:
    """Every page of a range read, in order, at most `pages_max` of them: a range that has more raises
    what `too_long()` makes (the caller's bound, its error)."""
    for _ in range(pages_max):
        page = await backend.read_page(query)
        yield page
        if page.next_after is None:
            return
        query = query.after(page.next_after)
    raise too_long()


async def read_all(
    backend: StorageBackend, query: RowQuery, pages_max: int, too_long: Callable[[], Exception]
) -> AsyncIterator[Row]:
    """Every row of a range read, page by page (`read_pages`)."""
    async for page in read_pages(backend, query, pages_max, too_long):
        for row in page.rows:
            yield row
