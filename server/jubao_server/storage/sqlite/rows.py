"""Reads and writes on one connection; the backend runs them on its reader and writer threads."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Final

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Bound,
    BulkPut,
    ColumnPage,
    ColumnType,
    Following,
    Key,
    Page,
    PartitionRef,
    Row,
    RowQuery,
    Table,
    Value,
)
from jubao_server.storage.contract.conditions import conditioned_rows, conditions_hold, failed_outcome
from jubao_server.storage.sqlite import sql
from jubao_server.storage.sqlite.connections import immediate_transaction

Params = dict[str, Value]
Positional = tuple[Value, ...]


def _key_params(partition: PartitionRef, clustering: Key = ()) -> Params:
    table = partition.table
    values = (partition.scope, *partition.key, *clustering)
    return dict(zip(sql.key_params(table)[: len(values)], values, strict=True))


def _bound_params(side: str, bound: Bound | None) -> Params:
    return {} if bound is None else {f"{side}_{i}": v for i, v in enumerate(bound.values)}


def _decode(table: Table, names: Sequence[str], values: Sequence[Any]) -> Row:
    """Booleans are stored as 0/1 and come back as bool."""
    return Row(
        {
            name: bool(value) if value is not None and table.columns[name] is ColumnType.BOOLEAN else value
            for name, value in zip(names, values, strict=True)
        }
    )


def _decode_row(table: Table, record: Sequence[Any]) -> Row:
    return _decode(table, sql.row_columns(table), record[1:])  # record[0] is the scope


def fetch_row(
    connection: sqlite3.Connection, partition: PartitionRef, clustering: Key, now_ms: int
) -> Row | None:
    table = partition.table
    ensure(len(clustering) == len(table.clustering_key), f"{table.name}: wrong clustering arity")
    params = {**_key_params(partition, clustering), "now": now_ms}
    record = connection.execute(sql.select_row(table), params).fetchone()
    return None if record is None else _decode_row(table, record)


def fetch_static(connection: sqlite3.Connection, partition: PartitionRef, now_ms: int) -> Row | None:
    table = partition.table
    if not table.static_columns:
        return None
    params = {**_key_params(partition), "now": now_ms}
    record = connection.execute(sql.select_static(table), params).fetchone()
    return None if record is None else _decode(table, table.static_column_order, record)


def fetch_page(connection: sqlite3.Connection, query: RowQuery, now_ms: int) -> Page:
    """One page; fetches `limit + 1` rows to learn whether more follow."""
    table = query.partition.table
    records = _page_records(connection, query, now_ms)
    rows = tuple(_decode_row(table, r) for r in records[: query.limit])
    more = len(records) > query.limit
    last = tuple(rows[-1].values[c] for c in table.clustering_key) if more else None
    return Page(rows=rows, next_after=last)


def fetch_columns(
    connection: sqlite3.Connection, query: RowQuery, names: Sequence[str], now_ms: int
) -> ColumnPage:
    """One page as columns: the records transposed at once, no `Row` per row."""
    table = query.partition.table
    records = _page_records(connection, query, now_ms)
    kept = records[: query.limit]
    # Column i + 1 of a record is row column i (column 0 is the scope).
    positions = {name: i + 1 for i, name in enumerate(sql.row_columns(table))}
    transposed = list(zip(*kept, strict=True)) if kept else [() for _ in range(len(positions) + 1)]

    def column(name: str) -> list[Value]:
        values = list(transposed[positions[name]])
        if table.columns[name] is ColumnType.BOOLEAN:
            return [None if value is None else bool(value) for value in values]
        return values

    more = len(records) > query.limit
    last = tuple(kept[-1][positions[c]] for c in table.clustering_key) if more else None
    return ColumnPage({name: column(name) for name in names}, len(kept), last)


def _page_records(connection: sqlite3.Connection, query: RowQuery, now_ms: int) -> list[Any]:
    """The page's records (scope, then the row columns), `limit + 1` at most."""
    table = query.partition.table
    params = {
        **_key_params(query.partition),
        **_bound_params("lo", query.lower),
        **_bound_params("hi", query.upper),
        "now": now_ms,
        "limit": query.limit + 1,
    }
    text = sql.select_page(table, query.shape)
    return connection.execute(text, params).fetchall()


def fetch_rows(
    connection: sqlite3.Connection, partition: PartitionRef, keys: Sequence[Key], now_ms: int
) -> dict[Key, Row | None]:
    """The live rows of `keys` in one partition (None where there is none), read a run of keys at a
    time (`sql.select_rows`): SQLite lets go of the GIL for each statement it steps, and a read per
    key made the writer thread win it back from the event loop once per key."""
    table = partition.table
    width = len(table.clustering_key)
    found: dict[Key, Row | None] = dict.fromkeys(keys)
    if width == 0 or len(found) <= 1:
        return {key: fetch_row(connection, partition, key, now_ms) for key in found}
    partition_params = {**_key_params(partition), "now": now_ms}
    for run in sql.statement_runs(list(found), width):
        names = sql.in_params(table, len(run))
        params = partition_params | dict(zip(names, itertools.chain.from_iterable(run), strict=True))
        for record in connection.execute(sql.select_rows(table, len(run)), params).fetchall():
            found[tuple(record[1 : 1 + width])] = _decode_row(table, record)
    return found


def _current_state(
    connection: sqlite3.Connection, batch: Batch, now_ms: int
) -> tuple[dict[Key, Row | None], Row | None]:
    rows = fetch_rows(connection, batch.partition, conditioned_rows(batch), now_ms)
    return rows, fetch_static(connection, batch.partition, now_ms)


# A write's statement: its kind (a put, a static write or a delete), its table and the columns it
# writes. Consecutive writes of one shape go to SQLite together (`_write_rows`).
Shape = tuple[str, Table, tuple[str, ...]]
_PUT: Final = "put"
_STATIC: Final = "static"
_DELETE: Final = "delete"


def _writes(batches: Sequence[Following], now_ms: int) -> Iterator[tuple[Shape, Positional]]:
    """Every write of `batches` in order (puts, deletes, then static values of each batch; a bulk put's
    rows), with its shape and its positional parameters: a put's key, its values and its expiry
    (`sql.upsert`), a static write's partition key, values and no expiry (static rows never expire: a
    batch gives static values no TTL), a delete's key."""
    for batch in batches:
        if isinstance(batch, BulkPut):
            shape: Shape = (_PUT, batch.table, batch.columns)
            scope = batch.scope
            for partition_key, clustering, row_values in batch.rows:
                yield shape, (scope, *partition_key, *clustering, *row_values, None)
            continue
        partition = batch.partition
        table = partition.table
        key = (partition.scope, *partition.key)
        for put in batch.puts:
            values = put.values
            expires = None if put.ttl_s is None else now_ms + put.ttl_s * 1000
            yield (_PUT, table, tuple(values)), (*key, *put.clustering, *values.values(), expires)
        for delete in batch.deletes:
            yield (_DELETE, table, ()), (*key, *delete.clustering)
        if batch.static_values:
            static = batch.static_values
            yield (_STATIC, table, tuple(static)), (*key, *static.values(), None)


def _write_rows(connection: sqlite3.Connection, batches: Sequence[Following], now_ms: int) -> None:
    """Run the writes of `batches` in order; consecutive writes of one shape (a shard's records, a
    journal's entries) go to SQLite together (`_write_run`)."""
    shape: Shape | None = None
    run: list[Positional] = []
    for next_shape, params in _writes(batches, now_ms):
        if next_shape != shape and shape is not None:
            _write_run(connection, shape, run, now_ms)
            run = []
        shape = next_shape
        run.append(params)
    if shape is not None:
        _write_run(connection, shape, run, now_ms)


def _write_run(connection: sqlite3.Connection, shape: Shape, run: list[Positional], now_ms: int) -> None:
    """Writes of one shape, in order: deletes in one `executemany`, upserts as multi-row statements
    (`sql.statement_runs`). SQLite lets go of the GIL for each statement it steps, and the writer thread
    must win it back before the next: one statement per row made the writer wait on the event loop's
    Python once per row, where one per run of rows waits a few times a group."""
    kind, table, names = shape
    if kind == _DELETE:
        connection.executemany(sql.delete_row(table), run)
        return
    for rows in sql.statement_runs(run, len(run[0])):
        params = rows[0] if len(rows) == 1 else tuple(itertools.chain.from_iterable(rows))
        if kind == _STATIC:
            connection.execute(sql.static_rows(table, names, len(rows)), params)
            continue
        text, takes_now = sql.put_rows(table, names, len(rows))
        connection.execute(text, (*params, now_ms) if takes_now else params)


class GuardsFailed(Exception):
    """Raised inside a batch's savepoint when a guard's conditions did not hold: the caller rolls back
    what the guards before it wrote and answers `outcome`."""

    def __init__(self, outcome: BatchOutcome) -> None:
        super().__init__(f"guards {outcome.failed_guards} did not hold")
        self.outcome = outcome


def apply_in_transaction(
    connection: sqlite3.Connection,
    batch: Batch,
    now_ms: int,
    following: Sequence[Following] = (),
    guards: Sequence[Batch] = (),
) -> BatchOutcome:
    """Check the conditions and apply every write inside the caller's transaction (writer thread; the
    group commit of `group.py` wraps a batch in a savepoint when it must undo it alone), at wall time
    `now_ms`; when the batch applies, the unconditional `following` batches and bulk puts are written
    after it. Conditions see everything written earlier in the transaction. A put writes the listed
    columns and sets the expiry of the whole row (see the package doc). `guards`
    (`StorageBackend.write_after`) are checked and written one after the other once the batch's
    conditions hold; GuardsFailed when one did not hold."""
    if batch.conditional:
        rows, static = _current_state(connection, batch, now_ms)
        if not conditions_hold(batch, rows, static):
            return failed_outcome(batch, rows, static)
    failed: list[int] = []
    for index, guard in enumerate(guards):
        rows, static = _current_state(connection, guard, now_ms)
        if conditions_hold(guard, rows, static):
            _write_rows(connection, (guard,), now_ms)
        else:
            failed.append(index)
    if failed:
        raise GuardsFailed(BatchOutcome(applied=False, failed_guards=tuple(failed)))
    _write_rows(connection, (batch, *following), now_ms)
    return BatchOutcome(applied=True)


def _expiring_tables(connection: sqlite3.Connection) -> list[tuple[str, tuple[str, ...]]]:
    """Every table with an expiry column, with its primary key columns in key order."""
    names = connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT ?",
        (limits.storage_tables_max,),
    ).fetchall()
    found = []
    for (name,) in names:
        info = connection.execute("SELECT name, pk FROM pragma_table_info(?) ORDER BY pk", (name,)).fetchall()
        if any(column == sql.EXPIRES for column, _ in info):
            found.append((name, tuple(column for column, pk in info if pk > 0)))
    return found


def index_expiries(connection: sqlite3.Connection) -> None:
    """Give every table with an expiry column a partial index of the rows that have an expiry (writer
    thread, after the migrations), so that a TTL sweep reads the expired rows, not the whole table
    under the write lock: without it, the sweep of a ledger of a million transfers scanned 7 million
    rows every minute while every write waited. Rows without a TTL (a journal's entries) are not in
    the index and cost it nothing."""
    for name, _ in _expiring_tables(connection):
        connection.execute(sql.expiry_index(name))


def sweep_expired(connection: sqlite3.Connection, now_ms: int) -> int:
    """Delete up to `ttl_sweep_rows_max` rows per table expired at `now_ms` (writer thread; the
    expiry index of `index_expiries` finds them); return the count."""
    deleted = 0
    for name, keys in _expiring_tables(connection):
        with immediate_transaction(connection):
            params = {"now": now_ms, "rows": limits.ttl_sweep_rows_max}
            deleted += connection.execute(sql.sweep(name, keys), params).rowcount
    return deleted
