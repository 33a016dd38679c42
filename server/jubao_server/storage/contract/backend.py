"""The base class of every backend."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract.batch import Batch, BatchOutcome
from jubao_server.storage.contract.errors import FollowingWriteError, StorageError
from jubao_server.storage.contract.migrations import MigrationSet
from jubao_server.storage.contract.reads import ColumnPage, Consistency, Page, Row, RowQuery
from jubao_server.storage.contract.tables import PartitionRef
from jubao_server.storage.contract.values import Key


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

    async def read_columns(self, query: RowQuery, names: Sequence[str]) -> ColumnPage:
        """The page `read_page` reads, as the columns `names`. A backend may build them straight from its
        driver's records, without a `Row` per row (SQLite and Cassandra do)."""
        page = await self.read_page(query)
        columns = {name: [row.values[name] for row in page.rows] for name in names}
        return ColumnPage(columns, len(page.rows), page.next_after)

    @abc.abstractmethod
    async def write(self, batch: Batch) -> BatchOutcome:
        """Apply the batch atomically. An unconditional batch always applies (or raises StorageError)."""

    async def write_after(self, batch: Batch, following: Sequence[Batch]) -> BatchOutcome:
        """Apply `batch`; when it applies, also apply `following`, unconditional batches of other
        partitions derived from it (a journal materialized from the records `batch` commits). Writing a
        following batch twice must be harmless. A backend may write them in the same transaction
        (SQLite does: all or nothing, one commit) or after `batch` (Cassandra: a crash in between leaves
        them unwritten, so the caller must be able to write them again from what `batch` stored). Raises
        FollowingWriteError when `batch` applied and a following batch failed, StorageError when `batch`
        itself failed (it may then have applied, as any write whose answer was lost)."""
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

    async def write_following(self, following: Sequence[Batch]) -> None:
        """How `write_after` writes the batches that follow an applied batch (several in flight)."""
        await write_all(self, following)

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
