"""Opening connections, the write transaction, and the errors that mean "storage unavailable"."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Final

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import StorageError

# WAL with synchronous=NORMAL survives a process crash but may lose the last commits on an OS crash or a
# power cut. A transfer acknowledged to a client must survive both, so every commit fsyncs the WAL
# (FULL). Measured with loadtest/storage_bench.py on the dev VM: 3,400 single-row batches/s with FULL
# against 6,300 with NORMAL (100-row batches: 38,000 against 44,000 rows/s). The group commit of
# `group.py` shares that fsync among the batches queued meanwhile: about 9,500 single-row batches/s with
# FULL under the same bench (32 concurrent writers).
SYNCHRONOUS: Final = "FULL"
# Prepared statements kept per connection: the writer's multi-row upserts and reads take up to seven
# texts per shape (`sql.statement_runs`).
_STATEMENT_CACHE_SIZE: Final = 1024
_KIB_PER_MIB: Final = 1024

# Primary result codes of an OperationalError that mean the database is busy or the disk failed.
_UNAVAILABLE_CODES: Final = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)
_PRIMARY_CODE_MASK: Final = 0xFF


def _connect(settings: SqliteSettings, *, shared: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(
        settings.path,
        timeout=settings.busy_timeout_ms / 1000,  # sqlite3_busy_timeout
        isolation_level=None,  # autocommit: transactions are explicit BEGIN IMMEDIATE ... COMMIT
        check_same_thread=not shared,
        cached_statements=_STATEMENT_CACHE_SIZE,
    )
    connection.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    return connection


def connect_writer(settings: SqliteSettings) -> sqlite3.Connection:
    """The one writer connection; call it on the writer thread, which alone uses it. It never checkpoints
    the WAL by itself: the checkpointer's connection does, and asks the writer thread for a RESTART
    checkpoint between groups once the WAL is past its bound (`checkpoint.py`).

    Its page cache is `writer_cache_mib` (SQLite's default is 2 MiB). Journal rows land at keys spread
    over the tables (an account's entries, a transfer's id), so past a few MiB of data nearly every row
    an upsert writes missed the default cache and was read back from the file first: 50,000 transfers
    into 10,000 accounts took 6.9 µs a journal entry and 11.1 µs a transfer row on the writer with the
    default cache, 3.8 and 5.6 µs with 256 MiB. The cache holds what the writer has read or written
    since it opened, up to the bound, and is not shared with the readers."""
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    with unavailable_as_storage_error():
        connection = _connect(settings, shared=False)
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        connection.execute(f"PRAGMA cache_size = {-settings.writer_cache_mib * _KIB_PER_MIB}")
        # When the writer starts the WAL again, it cuts the file back to the WAL's bound.
        page_bytes = connection.execute("PRAGMA page_size").fetchone()[0]
        connection.execute(f"PRAGMA journal_size_limit = {limits.sqlite_wal_frames_max * page_bytes}")
    ensure(mode == "wal", f"sqlite journal_mode is {mode}, not wal")
    return connection


def connect_checkpointer(settings: SqliteSettings) -> sqlite3.Connection:
    """The connection that checkpoints the WAL; call it on the checkpointer's thread, which alone uses it."""
    return _connect(settings, shared=False)


def connect_reader(settings: SqliteSettings) -> sqlite3.Connection:
    """A read-only connection, handed between the reader threads (one user at a time)."""
    with unavailable_as_storage_error():
        connection = _connect(settings, shared=True)
        connection.execute("PRAGMA query_only = ON")
    return connection


def is_unavailable(error: sqlite3.Error) -> bool:
    return (
        isinstance(error, sqlite3.OperationalError)
        and (error.sqlite_errorcode & _PRIMARY_CODE_MASK) in _UNAVAILABLE_CODES
    )


@contextlib.contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        if is_unavailable(error):
            raise StorageError(f"sqlite: {error}") from error
        raise


@contextlib.contextmanager
def immediate_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """`BEGIN IMMEDIATE` (takes the write lock, waiting up to busy_timeout), COMMIT on success, ROLLBACK
    on any exception."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
