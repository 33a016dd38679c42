"""Small helpers shared by the conformance tests."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Final

from jubao_server.app import migration_sets as service_migration_sets
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.contract import (
    Batch,
    Key,
    MigrationSet,
    Page,
    PartitionRef,
    Put,
    Row,
    RowQuery,
    StorageBackend,
    Table,
    Value,
)
from jubao_server.storage.contract import read_pages as contract_pages
from jubao_server.storage.sqlite import SqliteBackend
from jubao_server.storage.sqlite.sql import STATIC_SUFFIX

from tests import cassandra_node

PAGES_MAX: Final = 1000
_MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"


def migration_sets(backend_name: str) -> list[MigrationSet]:
    """The service's schema (the platform's and every product's) and the conformance tables of one
    backend."""
    return [*service_migration_sets(backend_name), MigrationSet("conformance", _MIGRATIONS / backend_name)]


@contextlib.asynccontextmanager
async def migrated(opened: StorageBackend) -> AsyncIterator[StorageBackend]:
    """`opened` with the service's schema and the conformance tables; closed after."""
    try:
        await opened.migrate(migration_sets(opened.name))
        yield opened
    finally:
        await opened.close()


async def put_row(
    backend: StorageBackend,
    partition: PartitionRef,
    clustering: Key,
    values: Mapping[str, Value],
    ttl_s: int | None = None,
) -> None:
    """An unconditional single-row write, which always applies."""
    outcome = await backend.write(Batch(partition, puts=(Put(clustering, values, ttl_s),)))
    assert outcome.applied


async def read_pages(backend: StorageBackend, query: RowQuery) -> list[Page]:
    """Every page of the query, following `next_after` (the contract's `read_pages`)."""
    pages = contract_pages(backend, query, PAGES_MAX, lambda: AssertionError(f"more than {PAGES_MAX} pages"))
    return [page async for page in pages]


async def read_all(backend: StorageBackend, query: RowQuery) -> list[Row]:
    return [row for page in await read_pages(backend, query) for row in page.rows]


def clustering_of(partition: PartitionRef, row: Row) -> Key:
    return tuple(row[c] for c in partition.table.clustering_key)


def _sqlite_columns(path: Path, table_name: str) -> dict[str, str]:
    """Column -> declared type, with `pk<n>` appended for the n-th primary key column."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        info = connection.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table_name,))
        return {name: f"{kind.upper()} pk{pk}" if pk else kind.upper() for name, kind, pk in info}


async def physical_schema(backend: StorageBackend, table: Table) -> dict[str, dict[str, str]]:
    """The stored shape of `table` on SQLite or Cassandra: physical table name -> column -> backend type."""
    if isinstance(backend, SqliteBackend):
        names = [table.name] + ([table.name + STATIC_SUFFIX] if table.static_columns else [])
        return {name: _sqlite_columns(backend.path, name) for name in names}
    assert isinstance(backend, CassandraBackend)
    return {table.name: await cassandra_node.table_columns(backend, table.name)}
