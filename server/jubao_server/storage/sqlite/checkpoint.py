"""WAL checkpoints off the writer's path.

SQLite checkpoints the WAL into the database file, by default, inside the COMMIT that takes the WAL past
1,000 pages (`wal_autocheckpoint`): that commit copies the pages and fsyncs the database file before it
returns, and every batch queued behind it waits. Measured on a server at half its unary peak (make
bench's shape): a checkpoint every 0.4 s, 11.5 ms on average and up to 76 ms added to the commit that ran it.

So the writer connection turns automatic checkpoints off, and a thread of its own, with a connection of
its own, runs a PASSIVE checkpoint (it copies the frames no reader still needs, and neither waits for
nor blocks the writer or the readers) every `checkpoint_interval_ms` after a commit. Several processes on
one file each run one; a checkpoint that finds another in progress skips its turn.

The writer starts the WAL again from its beginning only when a checkpoint has copied all of it and no
reader still reads an older snapshot. Under a steady load that never happens by itself: the writer
appends while a PASSIVE checkpoint copies, so the copy always ends behind the last commit, and the WAL
grew without end (9.8 GB after six minutes of the bench's paced load, 27 MB/s). So once a checkpoint
leaves more than `sqlite_wal_frames_max` frames in the WAL, the writer thread runs a RESTART checkpoint
between two groups (`restart_wal`): it copies the frames committed since the PASSIVE one and waits for the
readers of older snapshots, for `sqlite_wal_restart_wait_ms_max` at most (a restart that could not finish
in that time is tried after the next interval); its next commit writes the WAL from its start, and its
`journal_size_limit` cuts the file back to the bound. Run from the checkpointer's connection instead, the
RESTART and the writer took turns through their busy handlers' sleeps: 35 ms for a restart (up to 150)
and 60 ms for the group behind it, the paced load's slowest seconds.

The RESTART still held the writer long. Timed in the 5-minute paced load (make bench-full's shape,
SQLite): restarts every 2 s, 30 ms at the median and up to 68 ms, and the load's slowest seconds (p99
over 100 ms) were those of the longest restarts. The PASSIVE checkpoints before it sync the file only
with `fdatasync`, and only when they copied all of the WAL. So the checkpointer's thread fsyncs the
database file itself after every PASSIVE checkpoint that copied frames (`synced`; 11 ms at the median
there, off the writer's path), and a restart finds little left to write: 3.0 ms at the median and 33 ms
at most in the same load, 3.3 ms against 12 ms on the ledger alone (loadtest/ledger_bench.py, unary, in
process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import structlog

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import StorageError
from jubao_server.storage.sqlite.connections import connect_checkpointer, is_unavailable

_log = structlog.get_logger(__name__)


@dataclasses.dataclass
class CheckpointStats:
    checkpoints: int = 0  # PASSIVE checkpoints run
    busy: int = 0  # skipped: another connection was checkpointing
    frames_left: int = 0  # WAL frames the last checkpoint could not copy (a reader still needed them)
    restarts: int = 0  # RESTART checkpoints that finished: the WAL starts again from its beginning
    restarts_busy: int = 0  # RESTART checkpoints that could not finish in time (tried again later)
    synced: int = 0  # fsyncs of the database file after a PASSIVE checkpoint that copied frames


class Checkpointer:
    """A task that checkpoints the WAL on its own thread after commits (`commits` counts them)."""

    def __init__(
        self,
        settings: SqliteSettings,
        clock: Clock,
        commits: Callable[[], int],
        restart: Callable[[], Awaitable[bool]],
    ) -> None:
        """`restart` runs `restart_wal` on the writer's thread, between groups."""
        self._settings = settings
        self._clock = clock
        self._commits = commits
        self._restart = restart
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="jubao-sqlite-checkpoint")
        self._connection: sqlite3.Connection | None = None
        # A descriptor of the database file, to fsync what the PASSIVE checkpoints copied (the module).
        self._database_fd: int | None = None
        # SQLite's count of the WAL frames copied into the database file when it was last synced.
        self._synced_frames = 0
        self.stats = CheckpointStats()
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close_connection)
        self._pool.shutdown(wait=True)

    async def checkpoint(self) -> None:
        """Run one PASSIVE checkpoint now, then a restart of the WAL if it is past its bound."""
        frames = await asyncio.get_running_loop().run_in_executor(self._pool, self._checkpoint)
        if frames > limits.sqlite_wal_frames_max:
            if await self._restart():
                self.stats.restarts += 1
            else:
                self.stats.restarts_busy += 1

    async def _run(self) -> None:
        interval_s = self._settings.checkpoint_interval_ms / 1000
        seen = self._commits()
        while True:
            await self._clock.sleep(interval_s)
            commits = self._commits()
            if commits == seen:
                continue
            seen = commits
            try:
                await self.checkpoint()
            except (sqlite3.Error, StorageError, OSError) as error:
                _log.warning("sqlite_checkpoint_failed", error=str(error))

    def _checkpoint(self) -> int:
        """A PASSIVE checkpoint; the frames in the WAL (0 when another connection was checkpointing)."""
        if self._connection is None:
            self._connection = connect_checkpointer(self._settings)
        try:
            busy, frames, copied = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError as error:
            if not is_unavailable(error):
                raise
            self.stats.busy += 1
            return 0
        self.stats.checkpoints += 1
        self.stats.busy += int(busy)
        self.stats.frames_left = max(0, frames - copied)
        self._sync(copied)
        return int(frames)

    def _sync(self, copied: int) -> None:
        """Fsync the database file when this checkpoint copied frames (SQLite's count of the frames copied
        changed), so that a RESTART on the writer's path need not (the module)."""
        if copied == self._synced_frames:
            return
        if self._database_fd is None:
            self._database_fd = os.open(self._settings.path, os.O_RDONLY)
        os.fsync(self._database_fd)
        self._synced_frames = copied
        self.stats.synced += 1

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._database_fd is not None:
            os.close(self._database_fd)
            self._database_fd = None


def restart_wal(writer: sqlite3.Connection, busy_timeout_ms: int) -> bool:
    """On the writer's thread, between groups: a RESTART checkpoint (see the module's doc), waiting for
    readers of older snapshots for `sqlite_wal_restart_wait_ms_max` at most, then the writer's own
    `busy_timeout_ms` again. True when the WAL starts again from its beginning."""
    writer.execute(f"PRAGMA busy_timeout = {limits.sqlite_wal_restart_wait_ms_max}")
    try:
        busy = writer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
    except sqlite3.OperationalError as error:
        if not is_unavailable(error):
            raise
        busy = 1
    finally:
        writer.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    return not busy
