"""Versioned schema files `NNNN_description.sql`, each applied once in its own transaction and recorded
with its sha256 in `schema_migrations` (or carried over from its set's former name: see
`contract/migrations.py`). Runs on the writer thread; `BEGIN IMMEDIATE` serializes processes that
migrate the same file at once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from jubao_server import limits
from jubao_server.storage.contract import MigrationError, MigrationSet
from jubao_server.storage.contract.migrations import (
    Recorded,
    SchemaFile,
    carried_over,
    check_unchanged,
    schema_files,
)
from jubao_server.storage.sqlite import rows
from jubao_server.storage.sqlite.connections import immediate_transaction, is_unavailable

SUFFIX: Final = ".sql"
_LEDGER: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    set_name TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    PRIMARY KEY (set_name, version)
) WITHOUT ROWID
"""


def _statements(file: SchemaFile) -> Iterator[str]:
    """Cut after each ';' that ends a statement as SQLite's tokenizer sees it (not one inside a string
    literal or a trigger body), so one line may hold several statements."""
    *pieces, tail = file.text.split(";")
    pending = ""
    count = 0
    for piece in pieces:
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            count += 1
            if count > limits.migration_statements_per_file_max:
                raise MigrationError(f"{file.label}: over migration_statements_per_file_max statements")
            yield pending
            pending = ""
    leftover = [s for s in (pending + tail).splitlines() if s.strip() and not s.strip().startswith("--")]
    if leftover:
        raise MigrationError(f"{file.label}: statement without a closing ';'")


def _apply(connection: sqlite3.Connection, file: SchemaFile, now_ms: int) -> bool:
    """Apply one file unless it is recorded; False when it was, or was carried over from its set's
    former name. A recorded file must be unchanged."""
    with immediate_transaction(connection):
        recorded = _recorded(connection, file.set_name, file.version)
        if recorded is not None:
            check_unchanged(file, recorded)
            return False
        former = None if file.formerly is None else _recorded(connection, file.formerly, file.version)
        if former is not None and carried_over(file, former):
            _record(connection, file, former.applied_at_ms)
            return False
        for statement in _statements(file):
            _execute(connection, file, statement)
        _record(connection, file, now_ms)
    return True


def _recorded(connection: sqlite3.Connection, set_name: str, version: int) -> Recorded | None:
    row = connection.execute(
        "SELECT name, checksum, applied_at_ms FROM schema_migrations WHERE set_name = ? AND version = ?",
        (set_name, version),
    ).fetchone()
    return None if row is None else Recorded(*row)


def _record(connection: sqlite3.Connection, file: SchemaFile, applied_at_ms: int) -> None:
    connection.execute(
        "INSERT INTO schema_migrations VALUES (?, ?, ?, ?, ?)",
        (file.set_name, file.version, file.name, file.checksum, applied_at_ms),
    )


def _execute(connection: sqlite3.Connection, file: SchemaFile, statement: str) -> None:
    try:
        connection.execute(statement)
    except sqlite3.Error as error:
        if is_unavailable(error):
            raise
        raise MigrationError(f"{file.label}: {error}") from error


def apply_sets(connection: sqlite3.Connection, sets: Sequence[MigrationSet], now_ms: int) -> list[str]:
    """Check every file of every set, then apply the new ones in order, recorded as applied at wall time
    `now_ms`; return their `set/file` names."""
    if len(sets) > limits.migration_sets_max:
        raise MigrationError("more than migration_sets_max migration sets")
    files = [f for s in sets for f in schema_files(s, SUFFIX)]
    connection.execute(_LEDGER)
    applied = [f.label for f in files if _apply(connection, f, now_ms)]
    with immediate_transaction(connection):
        rows.index_expiries(connection)
    return applied
