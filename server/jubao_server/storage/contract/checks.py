"""The checks every `Batch` and `BulkPut` passes when it is built: shapes, types, sizes and the rules of
conditions.

Every batch of every write passes them, so they stay cheap: each column's check comes from its table
(`Table.value_checks`), and a message is built only for a check that fails."""

from __future__ import annotations

import typing
from collections.abc import Mapping

from jubao_server import limits
from jubao_server.invariants import violated
from jubao_server.storage.contract.tables import Table
from jubao_server.storage.contract.values import Key, Value
from jubao_server.storage.contract.writes import RowAbsent, StaticMatches

if typing.TYPE_CHECKING:
    from jubao_server.storage.contract.batch import Batch
    from jubao_server.storage.contract.bulk import BulkRow


def check_batch(batch: Batch) -> None:
    """Raise InvariantViolation unless `batch` is well formed. A conditional batch must write a value
    that the unknown-outcome read-back can look for (see `unknown.py`)."""
    table = batch.partition.table
    puts, static_values = batch.puts, batch.static_values
    if not (puts or batch.deletes or static_values):
        violated(f"{table.name}: empty batch")
    if batch.row_count > limits.batch_rows_max:
        violated(f"{table.name}: batch over batch_rows_max")
    written = _written_rows(batch)
    if static_values is not None:
        if not static_values:
            violated(f"{table.name}: empty static write")
        if not table.static_columns.issuperset(static_values):
            violated(f"{table.name}: not a static column")
    size_bytes = sum(_values_bytes(table, put.values) for put in puts)
    if static_values:
        size_bytes += _values_bytes(table, static_values)
    if size_bytes > limits.batch_bytes_max:
        violated(f"{table.name}: batch over batch_bytes_max")
    if batch.conditions:
        _check_conditions(batch, written)
        if not (puts or static_values):
            violated(f"{table.name}: a conditional batch must write a value (see unknown outcomes)")


def check_bulk_put(table: Table, scope: str, columns: tuple[str, ...], rows: tuple[BulkRow, ...]) -> None:
    """Raise InvariantViolation unless a bulk put of `rows` writing `columns` is well formed: its shape
    once (scope, columns, size), then its keys and values column by column (`TypeRules.column_bytes`,
    `plain_keys`: C loops over a column where its types allow), and no row twice."""
    if not isinstance(scope, str) or not scope:
        violated(f"{table.name}: a bulk put needs a scope")
    if not rows or len(rows) > limits.storage_bulk_put_rows_max:
        violated(f"{table.name}: a bulk put of {len(rows)} rows")
    if not table.regular_column_set.issuperset(columns) or len(set(columns)) != len(columns):
        violated(f"{table.name}: a bulk put writes a column that is not regular, or one twice")
    if not columns and table.regular_columns:
        violated(f"{table.name}: put writes nothing")
    partitions, clusterings, values = zip(*rows, strict=True)
    _check_key_columns(table, table.partition_key, partitions)
    _check_key_columns(table, table.clustering_key, clusterings)
    widths = set(map(len, values))
    if widths != {len(columns)}:
        violated(f"{table.name}: a bulk row has {max(widths)} values for {len(columns)} columns")
    size_bytes = 0
    rules = table.rules
    for column, column_values in zip(columns, zip(*values, strict=True), strict=True):
        values_bytes = rules[column].column_bytes(column_values)
        if values_bytes < 0:
            violated(f"{table.name}: bad value for {column} in a bulk put")
        size_bytes += values_bytes
    if size_bytes > limits.storage_bulk_put_bytes_max:
        violated(f"{table.name}: bulk put over storage_bulk_put_bytes_max")
    if len(set(zip(partitions, clusterings, strict=True))) != len(rows):
        violated(f"{table.name}: a row is written twice in one bulk put")


def _check_key_columns(table: Table, key_columns: tuple[str, ...], keys: tuple[Key, ...]) -> None:
    """Each of `keys` has a value for each of `key_columns`, and each value is a good key value of its
    column: a column of plain values at once, any other value by value (`Table.check_key`)."""
    if set(map(len, keys)) != {len(key_columns)}:
        violated(f"{table.name}: the key {key_columns} needs {len(key_columns)} values")
    rules = table.rules
    for column, column_values in zip(key_columns, zip(*keys, strict=True), strict=True):
        if not rules[column].plain_keys(column_values):
            for value in column_values:
                table.check_key((column,), (value,))


def _written_rows(batch: Batch) -> set[Key]:
    """The rows the batch writes, each once, with their keys and (for puts) columns and TTL checked."""
    table = batch.partition.table
    regular = table.regular_column_set
    written: set[Key] = set()
    for put in batch.puts:
        _check_clustering(table, put.clustering)
        if not put.values and table.regular_columns:
            violated(f"{table.name}: put writes nothing")
        if not regular.issuperset(put.values):
            violated(f"{table.name}: writes a non-regular column")
        if put.ttl_s is not None and not 0 < put.ttl_s <= limits.row_ttl_s_max:
            violated(f"{table.name}: bad ttl_s")
        written.add(put.clustering)
    for delete in batch.deletes:
        _check_clustering(table, delete.clustering)
        written.add(delete.clustering)
    if len(written) != len(batch.puts) + len(batch.deletes):
        violated(f"{table.name}: a row is written twice in one batch")
    return written


def _values_bytes(table: Table, values: Mapping[str, Value]) -> int:
    """The size the values count for in a batch; each is checked against its column's type."""
    sizes = table.value_bytes
    size_bytes = 0
    for column, value in values.items():
        value_size = sizes[column](value)
        if value_size < 0:
            violated(f"{table.name}: bad value for {column}")
        size_bytes += value_size
    return size_bytes


def _check_clustering(table: Table, clustering: Key) -> None:
    table.check_key(table.clustering_key, clustering)


def _check_conditions(batch: Batch, written: set[Key]) -> None:
    table = batch.partition.table
    put_rows = {p.clustering for p in batch.puts}
    conditioned: set[Key] = set()
    statics = 0
    for condition in batch.conditions:
        if isinstance(condition, StaticMatches):
            statics += 1
            if batch.static_values is None:
                violated(f"{table.name}: StaticMatches needs static_values")
            if not table.static_columns.issuperset(condition.expected):
                violated(f"{table.name}: not static")
            continue
        if condition.clustering in conditioned:
            violated(f"{table.name}: two conditions on one row")
        conditioned.add(condition.clustering)
        if isinstance(condition, RowAbsent):
            if condition.clustering not in put_rows:
                violated(f"{table.name}: RowAbsent needs a Put of the row")
        else:
            if condition.clustering not in written:
                violated(f"{table.name}: RowMatches needs a write of the row")
            for column in condition.expected:
                if column not in table.regular_column_set:
                    violated(f"{table.name}: cannot compare {column}")
    if statics > 1:
        violated(f"{table.name}: two static conditions")
