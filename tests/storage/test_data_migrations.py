"""Data migrations (`platform/data_migrations.py`) on every backend: each runs once and is recorded with the
rows it wrote; one cut short is not recorded and runs again; a recorded version under another name fails.
On Cassandra the records are shared by the keyspace, so each test names a set of its own."""

from __future__ import annotations

import pytest
from jubao_server.platform.data_migrations import DATA_MIGRATIONS, DataMigration, apply_data_migrations
from jubao_server.storage.contract import PLATFORM_SCOPE, MigrationError, StorageBackend, StorageError


async def test_a_data_migration_runs_once_and_is_recorded(backend: StorageBackend, scope: str) -> None:
    name = f"set_{scope}"
    runs: list[str] = []

    async def first(_: StorageBackend) -> int:
        runs.append("first")
        return 7

    async def cut_short(_: StorageBackend) -> int:
        runs.append("second")
        raise StorageError("the storage went away")

    migrations = [DataMigration("0001_first", first)]
    assert await apply_data_migrations(backend, [(name, migrations)]) == [f"{name}/0001_first"]
    recorded = await backend.read_row(DATA_MIGRATIONS.partition(PLATFORM_SCOPE), (name, 1))
    assert recorded is not None and (recorded["name"], recorded["rows_written"]) == ("0001_first", 7)
    assert await apply_data_migrations(backend, [(name, migrations)]) == []

    migrations.append(DataMigration("0002_second", cut_short))
    for _ in range(2):
        with pytest.raises(StorageError):
            await apply_data_migrations(backend, [(name, migrations)])
    assert runs == ["first", "second", "second"]
    assert await backend.read_row(DATA_MIGRATIONS.partition(PLATFORM_SCOPE), (name, 2)) is None

    with pytest.raises(MigrationError, match="0001_first"):
        await apply_data_migrations(backend, [(name, [DataMigration("0001_renamed", first)])])
