"""Tables and partitions: the shape a domain package declares, and the address of a partition."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

from jubao_server.invariants import ensure, violated
from jubao_server.storage.contract.values import (
    SCOPE_COLUMN,
    TYPE_RULES,
    ColumnType,
    Key,
    TypeRules,
    Value,
    ValueBytes,
    ValueCheck,
    check_key_value,
)

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def is_identifier(name: str) -> bool:
    """A table or column name: lowercase letters, digits and `_`, starting with a letter."""
    return bool(_IDENTIFIER.match(name))


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
    """A table's shape, declared by the domain package that owns it.

    `columns` names every column but `scope`, keys included. The backend schema files (SQL, CQL) must
    create exactly this shape; the conformance suite checks that they do.

    A table is its declaration: equal only to itself, and hashable, so that a backend builds what it
    derives from a table (statement texts, column lists) once and looks it up by the table after that.
    """

    name: str
    partition_key: tuple[str, ...]
    columns: Mapping[str, ColumnType]
    clustering_key: tuple[str, ...] = ()
    static_columns: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        ensure(is_identifier(self.name), f"bad table name {self.name!r}")
        ensure(SCOPE_COLUMN not in self.columns, f"{self.name}: 'scope' is implicit")
        for column in self.columns:
            ensure(is_identifier(column), f"{self.name}: bad column name {column!r}")
        keys = self.partition_key + self.clustering_key
        ensure(len(set(keys)) == len(keys), f"{self.name}: repeated key column")
        for column in keys:
            ensure(column in self.columns, f"{self.name}: key column {column} has no type")
        ensure(self.static_columns <= set(self.columns), f"{self.name}: unknown static column")
        ensure(not self.static_columns & set(keys), f"{self.name}: a key column cannot be static")
        ensure(
            not self.static_columns or bool(self.clustering_key),
            f"{self.name}: static columns need clustering columns",
        )

    @functools.cached_property
    def regular_columns(self) -> tuple[str, ...]:
        keys = set(self.partition_key) | set(self.clustering_key)
        return tuple(c for c in self.columns if c not in keys and c not in self.static_columns)

    @functools.cached_property
    def regular_column_set(self) -> frozenset[str]:
        return frozenset(self.regular_columns)

    @functools.cached_property
    def value_checks(self) -> Mapping[str, ValueCheck]:
        """The check of each column's values (`check_value` with its type)."""
        return {column: TYPE_RULES[column_type].check for column, column_type in self.columns.items()}

    @functools.cached_property
    def value_bytes(self) -> Mapping[str, ValueBytes]:
        """Each column's check and size of a value in one call (`TypeRules.value_bytes`)."""
        return {column: TYPE_RULES[column_type].value_bytes for column, column_type in self.columns.items()}

    @functools.cached_property
    def rules(self) -> Mapping[str, TypeRules]:
        """Each column's type rules (what a bulk put checks a column of values with)."""
        return {column: TYPE_RULES[column_type] for column, column_type in self.columns.items()}

    @functools.cached_property
    def plain_keys(self) -> Mapping[str, ValueCheck]:
        """Each column's quick test of a key value (`TypeRules.plain_key`)."""
        return {column: TYPE_RULES[column_type].plain_key for column, column_type in self.columns.items()}

    def check_key(self, columns: tuple[str, ...], values: Key) -> None:
        """Raise InvariantViolation unless `values` are good key values of `columns` (as many)."""
        if len(values) != len(columns):
            violated(f"{self.name}: the key {columns} needs {len(columns)} values")
        plain, checks = self.plain_keys, self.value_checks
        for column, value in zip(columns, values, strict=True):
            if plain[column](value):
                continue
            check_key_value(value)
            if not checks[column](value):
                violated(f"{self.name}: bad value for {column}")

    @functools.cached_property
    def static_column_order(self) -> tuple[str, ...]:
        """The static columns in declaration order."""
        return tuple(c for c in self.columns if c in self.static_columns)

    def partition(self, scope: str, *key: Value) -> PartitionRef:
        return PartitionRef(self, scope, tuple(key))


@dataclasses.dataclass(frozen=True)
class PartitionRef:
    table: Table
    scope: str
    key: Key

    def __post_init__(self) -> None:
        table = self.table
        ensure(bool(self.scope), "empty scope")
        ensure(isinstance(self.scope, str), "scope must be text")
        table.check_key(table.partition_key, self.key)
