"""The migrated schema has exactly the shape the `Table` specs declare (the platform's and those every
product declares), and migrating twice is a no-op.

The memory backend has no column DDL (a table takes the shape of its declared `Table`): its schema files
name the tables they create, and those must be exactly the declared ones."""

from __future__ import annotations

from typing import Final

from jubao_server.app import PRODUCTS
from jubao_server.bulk import tables as bulk_tables
from jubao_server.platform.data_migrations import DATA_MIGRATIONS
from jubao_server.platform.idempotency import REQUEST_LOG
from jubao_server.platform.paging import SECRETS
from jubao_server.storage.contract import ColumnType, StorageBackend, Table
from jubao_server.storage.memory import MemoryBackend
from jubao_server.tenancy import tables as tenancy_tables

from .support import migration_sets, physical_schema
from .tables import CONFORMANCE_TABLES

TABLES: Final = (
    *(value for value in vars(tenancy_tables).values() if isinstance(value, Table)),
    *(table for product in PRODUCTS for table in product.tables),
    *(value for value in vars(bulk_tables).values() if isinstance(value, Table)),
    REQUEST_LOG,
    SECRETS,
    DATA_MIGRATIONS,
    *CONFORMANCE_TABLES,
)
_SQLITE_TYPES: Final = {
    ColumnType.TEXT: "TEXT",
    ColumnType.BIGINT: "INTEGER",
    ColumnType.BLOB: "BLOB",
    ColumnType.BOOLEAN: "INTEGER",
}


def _sqlite_table(table: Table, keys: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    """The storage/sqlite conventions: `scope` + keys as the primary key, then values and the expiry."""
    shape = {"scope": "TEXT pk1"}
    shape |= {c: f"{_SQLITE_TYPES[table.columns[c]]} pk{i}" for i, c in enumerate(keys, start=2)}
    shape |= {c: _SQLITE_TYPES[table.columns[c]] for c in values}
    return shape | {"_expires_at_ms": "INTEGER"}


def _expected(backend_name: str, table: Table) -> dict[str, dict[str, str]]:
    if backend_name == "cassandra":
        return {table.name: {"scope": "text", **{c: t.value for c, t in table.columns.items()}}}
    keys = table.partition_key + table.clustering_key
    shape = {table.name: _sqlite_table(table, keys, table.regular_columns)}
    if table.static_columns:
        statics = tuple(c for c in table.columns if c in table.static_columns)
        shape[f"{table.name}__static"] = _sqlite_table(table, table.partition_key, statics)
    return shape


async def test_schema_matches_the_table_specs(backend: StorageBackend) -> None:
    assert len(TABLES) >= 6
    if isinstance(backend, MemoryBackend):
        assert sorted(backend.tables) == sorted(table.name for table in TABLES)
        return
    for table in TABLES:
        assert await physical_schema(backend, table) == _expected(backend.name, table), table.name


async def test_migrating_again_applies_nothing(backend: StorageBackend) -> None:
    assert await backend.migrate(migration_sets(backend.name)) == []
