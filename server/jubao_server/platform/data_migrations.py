"""Data migrations: code that rewrites what earlier versions stored when a new version reads more than
they wrote (an index its readers now rely on), where a schema file cannot (CQL has no INSERT ... SELECT).

A product declares them (`ProductSpec.data_migrations`) in order, each named like a schema file
(`NNNN_description`, numbered apart from the schema files of its set). `app.migrate` runs them after
every schema file, each once per storage: one that ran to its end is recorded (`data_migrations`, the
`~platform` scope, by set and version, with its name and the rows it wrote), and the next run skips it.
So a migration must be idempotent: one cut short (a crash, a storage error) runs again whole at the next
migrate, and servers starting at once may run it side by side. It works in batches over bounded pages,
each batch a unit that may be written again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import structlog

from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    ColumnType,
    MigrationError,
    Put,
    StorageBackend,
    Table,
)

DATA_MIGRATIONS: Final = Table(
    name="data_migrations",
    partition_key=(),
    clustering_key=("set_name", "version"),
    columns={
        "set_name": ColumnType.TEXT,
        "version": ColumnType.BIGINT,
        "name": ColumnType.TEXT,
        "rows_written": ColumnType.BIGINT,
    },
)
_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+$")

_log = structlog.get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class DataMigration:
    """`name`: `NNNN_description`; `run` rewrites the rows and returns how many it wrote."""

    name: str
    run: Callable[[StorageBackend], Awaitable[int]]

    def __post_init__(self) -> None:
        ensure(_NAME.match(self.name) is not None, f"data migration {self.name!r}: NNNN_description")

    @property
    def version(self) -> int:
        return int(self.name[:4])


async def apply_data_migrations(
    backend: StorageBackend, sets: Sequence[tuple[str, Sequence[DataMigration]]]
) -> list[str]:
    """Run the migrations of each (set name, migrations) not recorded yet, in order, and record each once
    it returned; the `set/name` of those run. A recorded version under another name fails the run."""
    partition = DATA_MIGRATIONS.partition(PLATFORM_SCOPE)
    applied: list[str] = []
    for set_name, migrations in sets:
        versions = [m.version for m in migrations]
        ensure(versions == sorted(set(versions)), f"{set_name}: data migrations out of order or repeated")
        for migration in migrations:
            key = (set_name, migration.version)
            recorded = await backend.read_row(partition, key)
            if recorded is not None:
                if recorded.as_text("name") != migration.name:
                    raise MigrationError(
                        f"{set_name}/{migration.name}: version recorded as {recorded.as_text('name')}"
                    )
                continue
            rows = await migration.run(backend)
            await backend.write(Batch(partition, (Put(key, {"name": migration.name, "rows_written": rows}),)))
            _log.info("data migrated", migration=f"{set_name}/{migration.name}", rows_written=rows)
            applied.append(f"{set_name}/{migration.name}")
    return applied
