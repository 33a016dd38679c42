"""The SQLite backend: one database file in WAL mode, one writer thread that group-commits the queued
batches (see `group.py`), a thread that checkpoints the WAL (`checkpoint.py`), a few reader threads."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import queue
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.invariants import ensure
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import (
    NO_FAULTS,
    Batch,
    BatchOutcome,
    ColumnPage,
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
)
from jubao_server.storage.contract.unknown import write_conditional, write_each_conditional
from jubao_server.storage.slots import Slots
from jubao_server.storage.sqlite import rows
from jubao_server.storage.sqlite.checkpoint import Checkpointer, CheckpointStats, restart_wal
from jubao_server.storage.sqlite.connections import (
    connect_reader,
    connect_writer,
    unavailable_as_storage_error,
)
from jubao_server.storage.sqlite.group import BatchResult, GroupCommitter, WriteStats
from jubao_server.storage.sqlite.migrator import apply_sets

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

_log = structlog.get_logger(__name__)


def _connect_all(settings: SqliteSettings) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]:
    writer = connect_writer(settings)
    return writer, [connect_reader(settings) for _ in range(settings.readers_max)]


class SqliteBackend(StorageBackend):
    """Every write runs on one thread that owns the only writer connection, so batches never contend for
    the lock inside this process (other processes wait up to busy_timeout); it commits the batches queued
    meanwhile in one transaction, as if one after another (`group.py`). Reads run on `readers_max`
    threads with their own connections; WAL lets them read while a write commits. Both SERIAL and
    DEFAULT reads see every committed batch, as there is a single writer and no replica. TTL expiry is
    decided by the injected clock's wall time, read when a group commits and when a read starts."""

    name = "sqlite"
    guarded_writes = True

    def __init__(
        self,
        settings: SqliteSettings,
        writer_pool: ThreadPoolExecutor,
        writer: sqlite3.Connection,
        readers: list[sqlite3.Connection],
        *,
        clock: Clock,
        faults: Faults,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._faults = faults
        self._writer_pool = writer_pool
        self._writer = writer
        self._group_commit = GroupCommitter(writer, writer_pool, clock)
        self._readers = readers
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        for reader in readers:
            self._idle_readers.put(reader)
        self._reader_pool = ThreadPoolExecutor(len(readers), thread_name_prefix="jubao-sqlite-reader")
        self._write_slots = Slots(limits.sqlite_queued_writes_max)
        self._read_slots = Slots(limits.sqlite_queued_reads_max)
        self._closed = False
        self._sweeper = asyncio.create_task(self._sweep_periodically())
        self._checkpointer = Checkpointer(
            settings,
            clock,
            lambda: self._group_commit.stats.transactions,
            lambda: self._on_writer(functools.partial(restart_wal, busy_timeout_ms=settings.busy_timeout_ms)),
        )

    @classmethod
    async def open(
        cls, settings: SqliteSettings, clock: Clock, *, faults: Faults = NO_FAULTS
    ) -> SqliteBackend:
        """Open (creating the file and its folder if needed) in WAL mode. The caller migrates."""
        writer_pool = ThreadPoolExecutor(1, thread_name_prefix="jubao-sqlite-writer")
        try:
            writer, readers = await asyncio.get_running_loop().run_in_executor(
                writer_pool, _connect_all, settings
            )
        except BaseException:
            writer_pool.shutdown(wait=False)
            raise
        return cls(settings, writer_pool, writer, readers, clock=clock, faults=faults)

    @property
    def path(self) -> Path:
        return self._settings.path

    @property
    def stats(self) -> WriteStats:
        """Group commit counters: batches written, transactions committed, the largest group."""
        return self._group_commit.stats

    @property
    def checkpoint_stats(self) -> CheckpointStats:
        """WAL checkpoints run (off the writer's thread) since the backend opened."""
        return dataclasses.replace(self._checkpointer.stats)

    async def migrate(self, sets: Sequence[MigrationSet]) -> list[str]:
        await self._faults.before_operation()
        job = functools.partial(apply_sets, sets=tuple(sets), now_ms=self._clock.wall_ms())
        return await self._on_writer(job)

    async def read_row(
        self, partition: PartitionRef, clustering: Key = (), consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._faults.before_operation()
        now_ms = self._clock.wall_ms()
        return await self._on_reader(lambda c: rows.fetch_row(c, partition, clustering, now_ms))

    async def read_static(
        self, partition: PartitionRef, consistency: Consistency = Consistency.DEFAULT
    ) -> Row | None:
        await self._faults.before_operation()
        now_ms = self._clock.wall_ms()
        return await self._on_reader(lambda c: rows.fetch_static(c, partition, now_ms))

    async def read_page(self, query: RowQuery) -> Page:
        await self._faults.before_operation()
        now_ms = self._clock.wall_ms()
        return await self._on_reader(lambda c: rows.fetch_page(c, query, now_ms))

    async def read_columns(self, query: RowQuery, names: Sequence[str]) -> ColumnPage:
        await self._faults.before_operation()
        now_ms = self._clock.wall_ms()
        return await self._on_reader(lambda c: rows.fetch_columns(c, query, names, now_ms))

    async def write(self, batch: Batch) -> BatchOutcome:
        return await self.write_after(batch, ())

    async def write_after(
        self, batch: Batch, following: Sequence[Following], guards: Sequence[Batch] = ()
    ) -> BatchOutcome:
        """`following` and `guards` are written with the batch (in its savepoint, when it has one): all
        are written, or none."""
        await self._faults.before_operation()
        ensure(not any(b.conditional for b in following), "following batches are unconditional")
        ensure(not guards or batch.conditional, "a guarded batch is conditional")
        attempt = functools.partial(self._write_once, following=tuple(following), guards=tuple(guards))
        if not batch.conditional:
            return await attempt(batch)
        return await write_conditional(self, self._faults, batch, attempt)

    async def write_each(self, batches: Sequence[Batch]) -> list[BatchOutcome | StorageError]:
        """The batches go to the writer as one write (one queue slot, one future, one wake-up of the
        event loop), each batch applied or not on its own in one group commit (`group.py`)."""
        ensure(len(batches) <= limits.storage_write_each_batches_max, "write_each takes a bounded list")
        single = functools.partial(self._write_once, following=())
        return await write_each_conditional(self, self._faults, batches, self._write_all_once, single)

    async def _write_once(
        self, batch: Batch, following: tuple[Following, ...], guards: tuple[Batch, ...] = ()
    ) -> BatchOutcome:
        """Queue the batch for the next group commit of the writer thread and wait for its outcome."""
        (result,) = await self._submit((batch,), following, guards)
        if isinstance(result, Exception):
            raise result
        return result

    async def _write_all_once(self, batches: Sequence[Batch]) -> list[BatchOutcome | StorageError]:
        """Queue the batches as one write; each one's outcome or StorageError. Any other error of a batch
        (a bug) is raised once every batch has its result."""
        if not batches:
            return []
        results = await self._submit(tuple(batches))
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, StorageError):
                raise result
        return [result for result in results if isinstance(result, BatchOutcome | StorageError)]

    async def _submit(
        self,
        batches: tuple[Batch, ...],
        following: tuple[Following, ...] = (),
        guards: tuple[Batch, ...] = (),
    ) -> list[BatchResult]:
        async with self._write_slots:
            self._check_open()
            return await self._group_commit.submit(batches, following, guards)

    async def sweep_expired(self) -> int:
        """Delete expired rows now (bounded per table); return how many went."""
        return await self._on_writer(functools.partial(rows.sweep_expired, now_ms=self._clock.wall_ms()))

    async def ready(self) -> bool:
        try:
            await self._faults.before_operation()
            await self._on_reader(lambda c: c.execute("SELECT 1").fetchone())
            await self._on_writer(lambda c: c.execute("SELECT 1").fetchone())
        except StorageError:
            return False
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self._checkpointer.close()
        await asyncio.to_thread(self._shut_down)

    def _shut_down(self) -> None:
        """Wait for queued jobs, then close every connection on the thread that uses it."""
        self._reader_pool.shutdown(wait=True)
        for reader in self._readers:
            reader.close()
        self._writer_pool.submit(self._close_writer).result()
        self._writer_pool.shutdown(wait=True)

    def _close_writer(self) -> None:
        """Writer thread: commit the batches still queued (none can join now), then close."""
        self._group_commit.drain_all()
        self._writer.close()

    async def _on_writer(self, job: Job[T]) -> T:
        async with self._write_slots:
            self._check_open()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer_pool, self._run_writer, job)

    def _run_writer(self, job: Job[T]) -> T:
        with unavailable_as_storage_error():
            return job(self._writer)

    async def _on_reader(self, job: Job[T]) -> T:
        async with self._read_slots:
            self._check_open()
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._reader_pool, self._run_reader, job)

    def _run_reader(self, job: Job[T]) -> T:
        """The pool has as many threads as connections, so an idle connection is always there."""
        connection = self._idle_readers.get_nowait()
        try:
            with unavailable_as_storage_error():
                return job(connection)
        finally:
            self._idle_readers.put(connection)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("sqlite backend is closed")

    async def _sweep_periodically(self) -> None:
        interval_s = self._settings.ttl_sweep_interval_ms / 1000
        while not self._closed:
            await self._clock.sleep(interval_s)
            try:
                deleted = await self.sweep_expired()
            except StorageError as error:
                _log.warning("sqlite_ttl_sweep_failed", error=str(error))
            else:
                _log.debug("sqlite_ttl_swept", rows=deleted)
