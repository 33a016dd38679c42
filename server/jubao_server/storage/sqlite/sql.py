"""SQL text for the table conventions of the package doc. Parameters are named: `:k_<column>` for key
columns (scope included), `:lo_<i>`/`:hi_<i>` for bounds, `:now` for the TTL, `:limit` and `:rows` for row
counts; except in the upserts of the write path, whose parameters are positional (`upsert`)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

from jubao_server import limits
from jubao_server.storage.contract import SCOPE_COLUMN, BoundShape, QueryShape, Table

EXPIRES: Final = "_expires_at_ms"
STATIC_SUFFIX: Final = "__static"
# Write statements are built once per shape (table, written columns): building the text costs about as
# much as running a single-row upsert on the writer thread.
_WRITE_TEXTS_MAX: Final = 1024


def q(name: str) -> str:
    """A quoted identifier (names are checked by `Table`, quoting guards against SQL keywords)."""
    return f'"{name}"'


def static_table(table: Table) -> str:
    return table.name + STATIC_SUFFIX


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def partition_columns(table: Table) -> tuple[str, ...]:
    return (SCOPE_COLUMN, *table.partition_key)


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def key_columns(table: Table) -> tuple[str, ...]:
    return (*partition_columns(table), *table.clustering_key)


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def key_params(table: Table) -> tuple[str, ...]:
    """The names of the key parameters (`k_<column>`), in `key_columns` order."""
    return tuple(f"k_{c}" for c in key_columns(table))


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def row_columns(table: Table) -> tuple[str, ...]:
    """The columns of a `Row` as read: clustering, regular, then static columns."""
    return (*table.clustering_key, *table.regular_columns, *table.static_column_order)


def _match(columns: Iterable[str], owner: str = "") -> list[str]:
    prefix = f"{owner}." if owner else ""
    return [f"{prefix}{q(c)} = :k_{c}" for c in columns]


def _live(owner: str) -> str:
    return f"({owner}.{EXPIRES} IS NULL OR {owner}.{EXPIRES} > :now)"


def _select(table: Table, extra: list[str]) -> str:
    """Live rows of one partition joined to its live static row. The scope leads every result row so
    that a table of key columns only still selects something."""
    statics = table.static_column_order
    names = [f"m.{q(c)}" for c in (SCOPE_COLUMN, *table.clustering_key, *table.regular_columns)]
    text = f"SELECT {', '.join(names + [f's.{q(c)}' for c in statics])} FROM {q(table.name)} AS m"
    if statics:
        joined = [f"s.{q(c)} = m.{q(c)}" for c in partition_columns(table)]
        text += f" LEFT JOIN {q(static_table(table))} AS s ON {' AND '.join([*joined, _live('s')])}"
    where = [*_match(partition_columns(table), "m"), _live("m"), *extra]
    return f"{text} WHERE {' AND '.join(where)}"


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_row(table: Table) -> str:
    return _select(table, _match(table.clustering_key, "m"))


def _bound(table: Table, shape: BoundShape, side: str, operator: str) -> str:
    arity, inclusive = shape
    names = ", ".join(f"m.{q(c)}" for c in table.clustering_key[:arity])
    params = ", ".join(f":{side}_{i}" for i in range(arity))
    return f"({names}) {operator}{'=' if inclusive else ''} ({params})"


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_page(table: Table, shape: QueryShape) -> str:
    """Rows within the bounds in clustering order, at most `:limit`. A bound on a prefix compares the
    prefix only, so `(ts) <= (4)` keeps every row whose `ts` is 4."""
    lower, upper, reverse = shape
    extra = []
    if lower is not None:
        extra.append(_bound(table, lower, "lo", ">"))
    if upper is not None:
        extra.append(_bound(table, upper, "hi", "<"))
    direction = "DESC" if reverse else "ASC"
    order = ", ".join(f"m.{q(c)} {direction}" for c in table.clustering_key)
    return f"{_select(table, extra)} ORDER BY {order} LIMIT :limit"


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_static(table: Table) -> str:
    names = ", ".join(q(c) for c in table.static_column_order)
    where = " AND ".join([*_match(partition_columns(table)), _live(q(static_table(table)))])
    return f"SELECT {names} FROM {q(static_table(table))} WHERE {where}"


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def upsert(
    table_name: str, keys: tuple[str, ...], names: tuple[str, ...], others: tuple[str, ...] = ()
) -> str:
    """Insert a row or overwrite the listed columns and the expiry of an existing one. The `others`
    (the columns not written) of an existing row that expired are cleared, so that the upsert does not
    revive them: a put on an expired row writes a new row. Its parameters are positional (`?NNN`, a
    tuple binds faster than a mapping): the key values, the written values, the expiry, and the time
    when there are `others`."""
    columns = ", ".join(q(c) for c in (*keys, *names, EXPIRES))
    values = ", ".join(f"?{i}" for i in range(1, len(keys) + len(names) + 2))
    now = f"?{len(keys) + len(names) + 2}"
    expired = f"{EXPIRES} IS NOT NULL AND {EXPIRES} <= {now}"
    updates = [f"{q(c)} = CASE WHEN {expired} THEN NULL ELSE {q(c)} END" for c in others]
    updates += [f"{q(c)} = excluded.{q(c)}" for c in (*names, EXPIRES)]
    conflict = ", ".join(q(c) for c in keys)
    return (
        f"INSERT INTO {q(table_name)} ({columns}) VALUES ({values}) "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    )


def put_row(table: Table, names: tuple[str, ...]) -> tuple[str, bool]:
    """The upsert of a put writing `names` into a row of `table` (the other regular columns cleared
    on an expired row), and whether it takes the time (when there are other columns)."""
    return _put_row(table.name, key_columns(table), names, table.regular_columns)


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def _put_row(
    table_name: str, keys: tuple[str, ...], names: tuple[str, ...], regular: tuple[str, ...]
) -> tuple[str, bool]:
    others = tuple(c for c in regular if c not in names)
    return upsert(table_name, keys, names, others), bool(others)


def delete_row(table: Table) -> str:
    return _delete_row(table.name, key_columns(table))


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def _delete_row(table_name: str, keys: tuple[str, ...]) -> str:
    return f"DELETE FROM {q(table_name)} WHERE {' AND '.join(_match(keys))}"


def expiry_index(table_name: str) -> str:
    """The partial index of a table's rows that have an expiry (what `sweep` reads)."""
    return (
        f"CREATE INDEX IF NOT EXISTS {q(table_name + '__expires')} ON {q(table_name)} ({EXPIRES}) "
        f"WHERE {EXPIRES} IS NOT NULL"
    )


def sweep(table_name: str, keys: tuple[str, ...]) -> str:
    """Delete at most `:rows` expired rows of a table whose primary key is `keys`."""
    names = ", ".join(q(c) for c in keys)
    expired = f"SELECT {names} FROM {q(table_name)} WHERE {EXPIRES} <= :now LIMIT :rows"
    return f"DELETE FROM {q(table_name)} WHERE ({names}) IN ({expired})"
