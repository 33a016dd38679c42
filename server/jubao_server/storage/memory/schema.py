"""Memory schema files: each `NNNN_description.tables` file names the tables it creates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from jubao_server import limits
from jubao_server.storage.contract import MigrationError, MigrationSet
from jubao_server.storage.contract.migrations import SchemaFile, schema_files
from jubao_server.storage.contract.tables import is_identifier

SUFFIX: Final = ".tables"
_COMMENT: Final = "--"


def table_names(file: SchemaFile) -> tuple[str, ...]:
    """The table names of one file: one per line, blank lines and `--` comments skipped."""
    names: list[str] = []
    for line in file.text.splitlines():
        name = line.strip()
        if not name or name.startswith(_COMMENT):
            continue
        if not is_identifier(name):
            raise MigrationError(f"{file.label}: {name!r} is not a table name")
        names.append(name)
        if len(names) > limits.storage_tables_max:
            raise MigrationError(f"{file.label}: more than storage_tables_max tables")
    if not names:
        raise MigrationError(f"{file.label}: names no table")
    return tuple(names)


def load_sets(sets: Sequence[MigrationSet]) -> list[tuple[SchemaFile, tuple[str, ...]]]:
    """Every file of every set in order, with the tables it creates; all are checked before any applies."""
    if len(sets) > limits.migration_sets_max:
        raise MigrationError("more than migration_sets_max migration sets")
    return [(file, table_names(file)) for s in sets for file in schema_files(s, SUFFIX)]
