"""CQL text for the contract's operations.

Identifiers are checked by the contract (lowercase, `[a-z][a-z0-9_]*`) and quoted here, so a column may
share its name with a CQL keyword. Values are always bind markers: the text is the statement's shape and
the key of the prepared-statement cache, and the parameters travel next to it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    SCOPE_COLUMN,
    Batch,
    BoundShape,
    BulkPut,
    Condition,
    Delete,
    Key,
    PartitionRef,
    Put,
    QueryShape,
    RowAbsent,
    RowMatches,
    RowQuery,
    StaticMatches,
    Table,
    Value,
)

Params = tuple[Value, ...]
Statement = tuple[str, Params]

_LOWER_OPERATORS = (">=", ">")
_UPPER_OPERATORS = ("<=", "<")


def quoted(name: str) -> str:
    return f'"{name}"'


def qualified(keyspace: str, table: Table) -> str:
    return f"{quoted(keyspace)}.{quoted(table.name)}"


def _names(columns: Iterable[str]) -> str:
    return ", ".join(quoted(c) for c in columns)


def _assignments(columns: Iterable[str], separator: str) -> str:
    return separator.join(f"{quoted(c)} = ?" for c in columns)


def _ordered(table: Table, values: Mapping[str, Value]) -> tuple[str, ...]:
    """The columns of `values` in declaration order, so equal shapes give equal statement text."""
    return _declared_order(table, tuple(values))


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def _declared_order(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in table.columns if c in columns)


def _expectation(table: Table, expected: Mapping[str, Value] | None) -> tuple[tuple[str, ...] | None, Params]:
    """The compared columns (None: no condition) and the values they must equal."""
    if expected is None:
        return None, ()
    columns = _ordered(table, expected)
    return columns, tuple(expected[c] for c in columns)


def _if(expected: Sequence[str] | None) -> str:
    """None: unconditional; empty: the row must exist; else each column must equal its bound value."""
    if expected is None:
        return ""
    if not expected:
        return " IF EXISTS"
    return " IF " + _assignments(expected, " AND ")


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def partition_columns(table: Table) -> tuple[str, ...]:
    return (SCOPE_COLUMN, *table.partition_key)


def partition_values(partition: PartitionRef) -> Params:
    return (partition.scope, *partition.key)


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def row_columns(table: Table) -> tuple[str, ...]:
    """The columns a read returns: clustering, regular and static columns."""
    return tuple(c for c in table.columns if c not in table.partition_key)


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_row(keyspace: str, table: Table) -> str:
    keys = partition_columns(table) + table.clustering_key
    where = _assignments(keys, " AND ")
    return f"SELECT {_names(row_columns(table))} FROM {qualified(keyspace, table)} WHERE {where}"


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_static(keyspace: str, table: Table) -> str:
    columns = table.static_column_order
    where = _assignments(partition_columns(table), " AND ")
    return f"SELECT {_names(columns)} FROM {qualified(keyspace, table)} WHERE {where} LIMIT 1"


def select_page(keyspace: str, query: RowQuery) -> Statement:
    """A clustering slice with multi-column bounds, one row over the limit to tell whether more follow."""
    params = partition_values(query.partition)
    for bound in (query.lower, query.upper):
        if bound is not None:
            params += bound.values
    return _select_page(keyspace, query.partition.table, query.shape), (*params, query.limit + 1)


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def _select_page(keyspace: str, table: Table, shape: QueryShape) -> str:
    lower, upper, reverse = shape
    where = [_assignments(partition_columns(table), " AND ")]
    for bound, operators in ((lower, _LOWER_OPERATORS), (upper, _UPPER_OPERATORS)):
        if bound is not None:
            where.append(_slice(table, bound, operators))
    order = ""
    if reverse:
        order = " ORDER BY " + ", ".join(f"{quoted(c)} DESC" for c in table.clustering_key)
    return (
        f"SELECT {_names(row_columns(table))} FROM {qualified(keyspace, table)}"
        f" WHERE {' AND '.join(where)}{order} LIMIT ?"
    )


def _slice(table: Table, bound: BoundShape, operators: tuple[str, str]) -> str:
    arity, inclusive = bound
    columns = table.clustering_key[:arity]
    operator = operators[0] if inclusive else operators[1]
    markers = ", ".join("?" for _ in columns)
    return f"({_names(columns)}) {operator} ({markers})"


def batch_statements(keyspace: str, batch: Batch) -> list[Statement]:
    """The statements of one batch, all on its partition; a conditional batch carries its IF clauses."""
    by_row = {c.clustering: c for c in batch.conditions if not isinstance(c, StaticMatches)}
    statements: list[Statement] = []
    for put in batch.puts:
        statements.extend(_put(keyspace, batch.partition, put, by_row.get(put.clustering)))
    for delete in batch.deletes:
        statements.append(_delete(keyspace, batch.partition, delete, by_row.get(delete.clustering)))
    if batch.static_values:
        static = next((c for c in batch.conditions if isinstance(c, StaticMatches)), None)
        statements.append(_static(keyspace, batch.partition, batch.static_values, static))
    return statements


def bulk_statements(keyspace: str, bulk: BulkPut) -> tuple[str, list[Params]]:
    """A bulk put's INSERT, one text for every row, and each row's parameters: its keys, then the
    values of the bulk's columns."""
    scope = bulk.scope
    rows = [(scope, *partition, *clustering, *values) for partition, clustering, values in bulk.rows]
    return _insert(keyspace, bulk.table, bulk.columns, timed=False, absent=False), rows


def _put(keyspace: str, partition: PartitionRef, put: Put, condition: Condition | None) -> list[Statement]:
    """INSERT [IF NOT EXISTS]; under RowMatches an UPDATE ... IF, preceded by an INSERT of the keys alone
    so the row marker gets the put's TTL exactly as an unconditional put would give it."""
    table = partition.table
    key_values = partition_values(partition) + put.clustering
    columns = _ordered(table, put.values)
    values = tuple(put.values[c] for c in columns)
    ttl: Params = () if put.ttl_s is None else (put.ttl_s,)
    timed = put.ttl_s is not None
    if not isinstance(condition, RowMatches):
        text = _insert(keyspace, table, columns, timed, isinstance(condition, RowAbsent))
        return [(text, key_values + values + ttl)]
    ensure(bool(columns), f"{table.name}: Cassandra cannot compare-and-set a row with no regular columns")
    expected, expected_values = _expectation(table, condition.expected)
    marker, update = _update(keyspace, table, columns, timed, expected)
    return [(marker, key_values + ttl), (update, ttl + values + key_values + expected_values)]


# A put's texts depend on its shape alone (table, columns, TTL or not, condition), which is what the
# prepared statements are keyed by too: built once per shape rather than once per row written.
@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def _insert(keyspace: str, table: Table, columns: tuple[str, ...], timed: bool, absent: bool) -> str:
    keys = partition_columns(table) + table.clustering_key
    markers = ", ".join("?" for _ in keys + columns)
    exists = " IF NOT EXISTS" if absent else ""
    using = " USING TTL ?" if timed else ""
    name = qualified(keyspace, table)
    return f"INSERT INTO {name} ({_names(keys + columns)}) VALUES ({markers}){exists}{using}"


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def _update(
    keyspace: str, table: Table, columns: tuple[str, ...], timed: bool, expected: tuple[str, ...] | None
) -> tuple[str, str]:
    """The INSERT of the keys alone (a put of no columns) and the UPDATE ... IF of a RowMatches put."""
    keys = partition_columns(table) + table.clustering_key
    using = " USING TTL ?" if timed else ""
    update = (
        f"UPDATE {qualified(keyspace, table)}{using} SET {_assignments(columns, ', ')}"
        f" WHERE {_assignments(keys, ' AND ')}{_if(expected)}"
    )
    return _insert(keyspace, table, (), timed, absent=False), update


def _delete(keyspace: str, partition: PartitionRef, delete: Delete, condition: Condition | None) -> Statement:
    table = partition.table
    keys = partition_columns(table) + table.clustering_key
    expected, expected_values = _expectation(
        table, condition.expected if isinstance(condition, RowMatches) else None
    )
    text = f"DELETE FROM {qualified(keyspace, table)} WHERE {_assignments(keys, ' AND ')}{_if(expected)}"
    return text, partition_values(partition) + delete.clustering + expected_values


def _static(
    keyspace: str, partition: PartitionRef, values: Mapping[str, Value], condition: StaticMatches | None
) -> Statement:
    """UPDATE of the static columns [IF s = ? ...]; a None expected value binds null (`IF s = null`).
    A StaticMatches with nothing to compare adds no clause."""
    table = partition.table
    columns = _ordered(table, values)
    compared = condition.expected if condition is not None and condition.expected else None
    expected, expected_values = _expectation(table, compared)
    text = (
        f"UPDATE {qualified(keyspace, table)} SET {_assignments(columns, ', ')}"
        f" WHERE {_assignments(partition_columns(table), ' AND ')}{_if(expected)}"
    )
    return text, tuple(values[c] for c in columns) + partition_values(partition) + expected_values


def clustering_of(table: Table, values: Mapping[str, Value]) -> Key:
    return tuple(values[c] for c in table.clustering_key)
