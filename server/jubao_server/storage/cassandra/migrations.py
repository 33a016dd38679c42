"""Schema files for Cassandra: finding, splitting and checking them, and the keyspace and bookkeeping
statements. The backend executes what this module prepares."""

from __future__ import annotations

import dataclasses
import re
from typing import Final

from jubao_server import limits
from jubao_server.storage.cassandra.cql import quoted
from jubao_server.storage.config import ReplicationSettings
from jubao_server.storage.contract import MigrationError, MigrationSet
from jubao_server.storage.contract.migrations import SchemaFile, schema_files

_DATACENTER_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_COMMENT = "--"
_END = ";"
SUFFIX: Final = ".cql"
TABLE: Final = "schema_migrations"


@dataclasses.dataclass(frozen=True)
class MigrationFile:
    schema: SchemaFile
    statements: tuple[str, ...]


def keyspace_cql(keyspace: str, replication: ReplicationSettings) -> str:
    options: dict[str, str] = {"class": replication.strategy}
    if replication.strategy == "SimpleStrategy":
        options["replication_factor"] = str(replication.replication_factor)
    else:
        for datacenter, replicas in sorted(replication.datacenters.items()):
            if not _DATACENTER_NAME.match(datacenter):
                raise MigrationError(f"replication: bad data centre name {datacenter!r}")
            options[datacenter] = str(replicas)
    literal = ", ".join(f"'{key}': '{value}'" for key, value in options.items())
    return f"CREATE KEYSPACE IF NOT EXISTS {quoted(keyspace)} WITH replication = {{{literal}}}"


def table_cql(keyspace: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted(keyspace)}.{TABLE} (set_name text, version int, name text,"
        " checksum text, applied_at_ms bigint, PRIMARY KEY ((set_name), version))"
    )


def recorded_cql(keyspace: str) -> str:
    return f"SELECT version, name, checksum, applied_at_ms FROM {quoted(keyspace)}.{TABLE} WHERE set_name = ?"


def record_cql(keyspace: str) -> str:
    return (
        f"INSERT INTO {quoted(keyspace)}.{TABLE} (set_name, version, name, checksum, applied_at_ms)"
        " VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
    )


def load_files(migration_set: MigrationSet) -> list[MigrationFile]:
    """The set's `NNNN_description.cql` files in version order, read and split into statements."""
    return [MigrationFile(f, split_statements(f.text, f.label)) for f in schema_files(migration_set, SUFFIX)]


def split_statements(text: str, where: str) -> tuple[str, ...]:
    """Statements end with `;` at the end of a line; lines starting with `--` are comments."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith(_COMMENT):
            continue
        current.append(line)
        if line.rstrip().endswith(_END):
            statement = "\n".join(current).strip().removesuffix(_END).strip()
            if statement:
                statements.append(statement)
            current = []
    if "\n".join(current).strip():
        raise MigrationError(f"{where}: text after the last statement (statements end with ';')")
    if not statements:
        raise MigrationError(f"{where}: no statement")
    if len(statements) > limits.migration_statements_per_file_max:
        raise MigrationError(f"{where}: over {limits.migration_statements_per_file_max} statements")
    return tuple(statements)
