"""Group commit: the writer thread applies every batch queued at that moment in one transaction.

A commit costs one fsync of the WAL (`synchronous=FULL`): committing each batch on its own held the
writer to about 3,000 batches a second. So a write queues its batches (one for `write`, many for
`write_each`), and the writer thread takes every queued write (in queue order; past the first write, at
most `sqlite_group_commit_batches_max` batches and `sqlite_group_commit_rows_max` rows), runs every batch
in one `BEGIN IMMEDIATE` transaction and commits once. Each batch keeps the contract's semantics, as if
the batches of a group ran one by one in queue order:

* A batch whose conditions fail writes nothing; its outcome shows the rows as the batches before it in
  the group left them.
* A batch that raises is rolled back to its savepoint and gets its own error; the others go on (the
  other batches of its write too). Batches run without a savepoint first (`_run_batches`); when one
  raises, the group is rolled back and runs again with a savepoint per batch.
* If the transaction itself fails (BEGIN or COMMIT fails, or SQLite rolls it back whole after an I/O
  error or a full disk), nothing of the group is written and every batch fails with StorageError.
* A group that wrote nothing (every batch failed its conditions or raised) rolls back: no fsync.

There is no timer: a lone write is committed at once, and writes queue up only while the writer thread
is busy (mostly with the fsync of the group before), so groups grow with the load. A write cancelled
before its group starts is dropped, as the thread pool drops a cancelled job it has not started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.invariants import ensure
from jubao_server.storage.contract import Batch, BatchOutcome, Following, StorageError
from jubao_server.storage.sqlite import rows
from jubao_server.storage.sqlite.connections import unavailable_as_storage_error

BatchResult = BatchOutcome | Exception


@dataclasses.dataclass
class WriteStats:
    """Counters of the group commit since the backend opened."""

    groups: int = 0  # transactions begun for queued batches
    transactions: int = 0  # of those, the committed ones (a group that wrote nothing rolls back)
    batches: int = 0  # batches run in a group (a write_each counts each of its batches)
    applied: int = 0
    not_applied: int = 0  # their conditions did not hold
    failed: int = 0  # raised, alone or with their whole group
    group_batches_max: int = 0  # the largest group, in batches

    def add(self, group: WriteStats) -> None:
        self.groups += group.groups
        self.transactions += group.transactions
        self.batches += group.batches
        self.applied += group.applied
        self.not_applied += group.not_applied
        self.failed += group.failed
        self.group_batches_max = max(self.group_batches_max, group.group_batches_max)


@dataclasses.dataclass(frozen=True)
class PendingWrite:
    """Batches queued together, each applied or not on its own (one for `write`, many for `write_each`),
    and for a lone batch the batches written with it when it applies, and its guards (`write_after`).
    Each batch's result (its outcome or its error) goes to `future`, of the event loop `loop`, in order."""

    batches: tuple[Batch, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[BatchResult]]
    following: tuple[Following, ...] = ()
    guards: tuple[Batch, ...] = ()

    @property
    def row_count(self) -> int:
        return sum(b.row_count for b in (*self.batches, *self.following, *self.guards))


def run_group(
    connection: sqlite3.Connection,
    writes: Sequence[PendingWrite],
    record: Callable[[WriteStats], None],
    now_ms: int,
) -> None:
    """Run `writes` in one transaction (writer thread) at wall time `now_ms` (TTL expiry), pass the
    group's counters to `record`, then hand every outcome to its event loop, so that a caller who got
    its outcome also sees it counted."""
    size = sum(len(write.batches) for write in writes)
    try:
        with unavailable_as_storage_error():
            connection.execute("BEGIN IMMEDIATE")
        try:
            results = _run_batches(connection, writes, now_ms, savepoints=False)
        except _BatchRaised:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            with unavailable_as_storage_error():
                connection.execute("BEGIN IMMEDIATE")
            results = _run_batches(connection, writes, now_ms, savepoints=True)
        wrote = any(isinstance(r, BatchOutcome) and r.applied for answer in results for r in answer)
        connection.execute("COMMIT" if wrote else "ROLLBACK")
    except Exception as error:
        if connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        record(WriteStats(groups=1, batches=size, failed=size, group_batches_max=size))
        _answer(writes, [[_group_failed(error) for _ in write.batches] for write in writes])
        return
    outcomes = [r for answer in results for r in answer if isinstance(r, BatchOutcome)]
    applied = sum(outcome.applied for outcome in outcomes)
    record(
        WriteStats(
            groups=1,
            transactions=int(wrote),
            batches=size,
            applied=applied,
            not_applied=len(outcomes) - applied,
            failed=size - len(outcomes),
            group_batches_max=size,
        )
    )
    _answer(writes, results)


Answer = tuple[asyncio.Future[list[BatchResult]], list[BatchResult]]


def _answer(writes: Sequence[PendingWrite], results: Sequence[list[BatchResult]]) -> None:
    """Resolve each write's future with its batches' results: one callback per event loop for the whole
    group (one wake-up of the loop, where a future per write woke it once per write)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for write, result in zip(writes, results, strict=True):
        by_loop.setdefault(write.loop, []).append((write.future, result))
    for loop, answers in by_loop.items():
        # A closed loop means nobody awaits the outcomes any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, answers)


def _resolve(answers: list[Answer]) -> None:
    """In the event loop: settle each future not cancelled meanwhile."""
    for future, results in answers:
        if not future.done():
            future.set_result(results)


class _BatchRaised(Exception):
    """A batch raised in a group run without savepoints: the group is rolled back and runs again with
    them."""


def _run_batches(
    connection: sqlite3.Connection, writes: Sequence[PendingWrite], now_ms: int, *, savepoints: bool
) -> list[list[BatchResult]]:
    """Each batch's result, in queue order (`_run_batch`)."""
    return [
        [_run_batch(connection, batch, write, now_ms, savepoints) for batch in write.batches]
        for write in writes
    ]


def _run_batch(
    connection: sqlite3.Connection, batch: Batch, write: PendingWrite, now_ms: int, savepoints: bool
) -> BatchResult:
    """A batch goes in a savepoint of its own when it has guards (a failed guard undoes the guards before
    it) or when `savepoints` is set; otherwise it runs without one and, if it raises, raises _BatchRaised,
    so that the group runs again, each batch in its savepoint, and gets its own error. A savepoint and its
    release are two statements, and each statement the writer steps costs it a wait for the GIL: for most
    batches they undid nothing."""
    if savepoints or write.guards:
        return _run_in_savepoint(connection, batch, write, now_ms)
    try:
        return rows.apply_in_transaction(connection, batch, now_ms, write.following)
    except Exception as error:
        raise _BatchRaised(str(error)) from error


def _run_in_savepoint(
    connection: sqlite3.Connection, batch: Batch, write: PendingWrite, now_ms: int
) -> BatchResult:
    """The batch's outcome (its write's following batches and guards written too when it applied), or
    its error, once what it wrote is undone (also when a guard failed). Raises when the transaction
    cannot go on, which fails the whole group."""
    connection.execute("SAVEPOINT batch")
    try:
        with unavailable_as_storage_error():
            outcome = rows.apply_in_transaction(connection, batch, now_ms, write.following, write.guards)
    except Exception as error:
        if not connection.in_transaction:
            raise StorageError(f"sqlite rolled the transaction back: {error}") from error
        connection.execute("ROLLBACK TO batch")
        connection.execute("RELEASE batch")
        return error.outcome if isinstance(error, rows.GuardsFailed) else error
    connection.execute("RELEASE batch")
    return outcome


def _group_failed(error: Exception) -> StorageError:
    """A fresh error per caller: one exception object raised in many tasks would pile up tracebacks."""
    failure = StorageError(f"write group not committed, nothing written: {error}")
    failure.__cause__ = error
    return failure


class GroupCommitter:
    """The queue of writes waiting for the writer thread, and the writer job that drains it.

    At most one drain job is queued or running (`_drain_scheduled`), and while batches wait there is
    one. A drain job runs one group, then queues itself again if batches still wait, so that the other
    writer jobs (a TTL sweep, a migration, a readiness probe) take their turn between groups.
    """

    def __init__(self, connection: sqlite3.Connection, writer_pool: ThreadPoolExecutor, clock: Clock) -> None:
        self._connection = connection
        self._writer_pool = writer_pool
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: collections.deque[PendingWrite] = collections.deque()
        self._drain_scheduled = False
        self._stats = WriteStats()

    @property
    def stats(self) -> WriteStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def submit(
        self,
        batches: tuple[Batch, ...],
        following: tuple[Following, ...] = (),
        guards: tuple[Batch, ...] = (),
    ) -> asyncio.Future[list[BatchResult]]:
        """Queue the batches, and for a lone batch the batches to write with it when it applies and its
        guards (in an event loop, while the writer pool runs); the future resolves with each batch's
        result once its group has committed (or failed)."""
        ensure(bool(batches), "a write has batches")
        ensure(len(batches) == 1 or not (following or guards), "only a lone batch has following batches")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[BatchResult]] = loop.create_future()
        with self._lock:
            self._queue.append(PendingWrite(batches, loop, future, following, guards))
            if self._drain_scheduled:
                return future
            self._drain_scheduled = True
        self._writer_pool.submit(self._drain_one_group)
        return future

    def drain_all(self) -> None:
        """Run every queued write now (writer thread; the backend calls it before closing the
        connection, once nothing more can be queued)."""
        while group := self._take():
            run_group(self._connection, group, self._record, self._clock.wall_ms())

    def _drain_one_group(self) -> None:
        group = self._take()
        if group:
            run_group(self._connection, group, self._record, self._clock.wall_ms())
        with self._lock:
            self._drain_scheduled = bool(self._queue)
            again = self._drain_scheduled
        if again:
            self._writer_pool.submit(self._drain_one_group)

    def _take(self) -> list[PendingWrite]:
        """The next group: queued writes in order, within the bounds past the first, skipping cancelled
        writes."""
        group: list[PendingWrite] = []
        group_batches = 0
        group_rows = 0
        with self._lock:
            while self._queue:
                batch_count = len(self._queue[0].batches)
                row_count = self._queue[0].row_count
                over_batches = group_batches + batch_count > limits.sqlite_group_commit_batches_max
                if group and (over_batches or group_rows + row_count > limits.sqlite_group_commit_rows_max):
                    break
                write = self._queue.popleft()
                # A write cancelled since it was queued is dropped; one cancelled from now on is
                # written, and its outcome goes unread (as a cancelled call's answer that was lost).
                if not write.future.cancelled():
                    group.append(write)
                    group_batches += batch_count
                    group_rows += row_count
        return group

    def _record(self, stats: WriteStats) -> None:
        with self._lock:
            self._stats.add(stats)
