"""The checks every `Batch` passes when it is built: shapes, types, sizes and the rules of conditions."""

from __future__ import annotations

import typing

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract.values import Key, check_key_value, check_value
from jubao_server.storage.contract.writes import RowAbsent, StaticMatches

if typing.TYPE_CHECKING:
    from jubao_server.storage.contract.batch import Batch


def check_batch(batch: Batch) -> None:
    """Raise InvariantViolation unless `batch` is well formed. A conditional batch must write a value
    that the unknown-outcome read-back can look for (see `unknown.py`)."""
    table = batch.partition.table
    ensure(bool(batch.puts or batch.deletes or batch.static_values), f"{table.name}: empty batch")
    ensure(batch.row_count <= limits.batch_rows_max, f"{table.name}: batch over batch_rows_max")
    written: list[Key] = []
    for put in batch.puts:
        _check_clustering(batch, put.clustering)
        ensure(bool(put.values) or not table.regular_columns, f"{table.name}: put writes nothing")
        ensure(table.regular_column_set.issuperset(put.values), f"{table.name}: writes a non-regular column")
        ensure(put.ttl_s is None or 0 < put.ttl_s <= limits.row_ttl_s_max, f"{table.name}: bad ttl_s")
        written.append(put.clustering)
    for delete in batch.deletes:
        _check_clustering(batch, delete.clustering)
        written.append(delete.clustering)
    ensure(len(set(written)) == len(written), f"{table.name}: a row is written twice in one batch")
    if batch.static_values is not None:
        ensure(bool(batch.static_values), f"{table.name}: empty static write")
        ensure(set(batch.static_values) <= table.static_columns, f"{table.name}: not a static column")
    _check_values(batch)
    _check_conditions(batch, set(written))
    ensure(
        not batch.conditions or bool(batch.puts or batch.static_values),
        f"{table.name}: a conditional batch must write a value (see unknown outcomes)",
    )


def _check_values(batch: Batch) -> None:
    table = batch.partition.table
    size_bytes = 0
    for values in [p.values for p in batch.puts] + [batch.static_values or {}]:
        for column, value in values.items():
            ensure(check_value(table.columns[column], value), f"{table.name}: bad value for {column}")
            size_bytes += len(value) if isinstance(value, str | bytes) else 8
    ensure(size_bytes <= limits.batch_bytes_max, f"{table.name}: batch over batch_bytes_max")


def _check_clustering(batch: Batch, clustering: Key) -> None:
    table = batch.partition.table
    ensure(len(clustering) == len(table.clustering_key), f"{table.name}: wrong clustering arity")
    for column, value in zip(table.clustering_key, clustering, strict=True):
        check_key_value(value)
        ensure(check_value(table.columns[column], value), f"{table.name}: bad value for {column}")


def _check_conditions(batch: Batch, written: set[Key]) -> None:
    table = batch.partition.table
    put_rows = {p.clustering for p in batch.puts}
    conditioned: set[Key] = set()
    statics = 0
    for condition in batch.conditions:
        if isinstance(condition, StaticMatches):
            statics += 1
            ensure(batch.static_values is not None, f"{table.name}: StaticMatches needs static_values")
            ensure(set(condition.expected) <= table.static_columns, f"{table.name}: not static")
            continue
        ensure(condition.clustering not in conditioned, f"{table.name}: two conditions on one row")
        conditioned.add(condition.clustering)
        if isinstance(condition, RowAbsent):
            ensure(condition.clustering in put_rows, f"{table.name}: RowAbsent needs a Put of the row")
        else:
            ensure(condition.clustering in written, f"{table.name}: RowMatches needs a write of the row")
            for column in condition.expected:
                ensure(column in table.regular_column_set, f"{table.name}: cannot compare {column}")
    ensure(statics <= 1, f"{table.name}: two static conditions")
