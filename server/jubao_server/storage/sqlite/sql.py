"""SQL text for the table conventions of the package doc. Parameters are named: `:k_<column>` for key
columns (scope included), `:lo_<i>`/`:hi_<i>` for bounds, `:now` for the TTL, `:limit` and `:rows` for row
counts; except in the upserts of the write path, whose parameters are positional (`upsert`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, TypeVar

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.storage.contract import SCOPE_COLUMN, BoundShape, QueryShape, Table

T = TypeVar("T")

EXPIRES: Final = "_expires_at_ms"
STATIC_SUFFIX: Final = "__static"
# Write statements are built once per shape (table, written columns): building the text costs about as
# much as running a single-row upsert on the writer thread.
_WRITE_TEXTS_MAX: Final = 1024
# SQLite's bound on a statement's parameters (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
_VARIABLES_MAX: Final = 32_766
# The parameters of a many-row statement that are not its rows' (the time, a partition's key).
_OTHER_VARIABLES_MAX: Final = 64


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


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def select_rows(table: Table, rows: int) -> str:
    """Live rows of one partition among `rows` clustering keys, in any order; the keys are named
    parameters `:in_<row>_<column>` (`in_params`)."""
    names = in_params(table, rows)
    width = len(table.clustering_key)
    keys = [names[row * width : (row + 1) * width] for row in range(rows)]
    if width == 1:
        listed = ", ".join(f":{key[0]}" for key in keys)
        return _select(table, [f"m.{q(table.clustering_key[0])} IN ({listed})"])
    columns = ", ".join(f"m.{q(c)}" for c in table.clustering_key)
    listed = ", ".join("(" + ", ".join(f":{name}" for name in key) + ")" for key in keys)
    return _select(table, [f"({columns}) IN (VALUES {listed})"])


@functools.lru_cache(maxsize=limits.storage_read_texts_max)
def in_params(table: Table, rows: int) -> tuple[str, ...]:
    """The names of the clustering key parameters of `select_rows`, row by row."""
    return tuple(f"in_{row}_{column}" for row in range(rows) for column in range(len(table.clustering_key)))


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
    table_name: str,
    keys: tuple[str, ...],
    names: tuple[str, ...],
    others: tuple[str, ...] = (),
    rows: int = 1,
) -> str:
    """Insert `rows` rows, each overwriting the listed columns and the expiry of an existing row. The
    `others` (the columns not written) of an existing row that expired are cleared, so that the upsert
    does not revive them: a put on an expired row writes a new row. Its parameters are positional
    (`?NNN`, a tuple binds faster than a mapping): for each row its key values, its written values and
    its expiry, then the time once when there are `others`. Rows are applied in order,
    so a later row of the same key overwrites an earlier one, as separate statements would."""
    width = len(keys) + len(names) + 1  # a row's parameters: its keys, its values and its expiry
    columns = ", ".join(q(c) for c in (*keys, *names, EXPIRES))
    values = ", ".join(
        "(" + ", ".join(f"?{row * width + i}" for i in range(1, width + 1)) + ")" for row in range(rows)
    )
    now = f"?{rows * width + 1}"
    expired = f"{EXPIRES} IS NOT NULL AND {EXPIRES} <= {now}"
    updates = [f"{q(c)} = CASE WHEN {expired} THEN NULL ELSE {q(c)} END" for c in others]
    updates += [f"{q(c)} = excluded.{q(c)}" for c in (*names, EXPIRES)]
    conflict = ", ".join(q(c) for c in keys)
    return (
        f"INSERT INTO {q(table_name)} ({columns}) VALUES {values} "
        f"ON CONFLICT ({conflict}) DO UPDATE SET {', '.join(updates)}"
    )


def statement_runs(items: Sequence[T], width: int) -> Iterator[Sequence[T]]:
    """`items` (rows of `width` parameters each, to write or to read) cut into the runs of one statement
    each, in order: at most `_rows_max(width)`, and a power of two, so that a shape has a few texts to
    prepare and keep (one per power of two), not one per row count. A shorter last run is padded with
    copies of its last item: reading a key twice, or upserting a row twice with the same values, leaves
    what once would, and one statement costs the writer less than one per power of two."""
    rows_max = _rows_max(width)
    for start in range(0, len(items), rows_max):
        run = items[start : start + rows_max]
        size = 1 << (len(run) - 1).bit_length()
        yield run if size == len(run) else [*run, *itertools.repeat(run[-1], size - len(run))]


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def _rows_max(width: int) -> int:
    """The rows of `width` parameters one statement takes: `sqlite_statement_rows_max`, halved until
    they fit in SQLite's parameter limit with the statement's own parameters."""
    rows_max = limits.sqlite_statement_rows_max
    ensure(rows_max & (rows_max - 1) == 0, "sqlite_statement_rows_max is a power of two")
    ensure(width + _OTHER_VARIABLES_MAX <= _VARIABLES_MAX, "a row fits in SQLite's parameter limit")
    while rows_max * width + _OTHER_VARIABLES_MAX > _VARIABLES_MAX:
        rows_max //= 2
    return rows_max


def put_rows(table: Table, names: tuple[str, ...], rows: int) -> tuple[str, bool]:
    """The upsert of `rows` puts writing `names` into rows of `table` (the other regular columns
    cleared on an expired row), and whether it takes the time (when there are other columns)."""
    return _put_rows(table.name, key_columns(table), names, table.regular_columns, rows)


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def _put_rows(
    table_name: str, keys: tuple[str, ...], names: tuple[str, ...], regular: tuple[str, ...], rows: int
) -> tuple[str, bool]:
    others = tuple(c for c in regular if c not in names)
    return upsert(table_name, keys, names, others, rows), bool(others)


def static_rows(table: Table, names: tuple[str, ...], rows: int) -> str:
    """The upsert of `rows` static writes of `names` (static rows never expire and clear nothing)."""
    return upsert(static_table(table), partition_columns(table), names, (), rows)


def delete_row(table: Table) -> str:
    return _delete_row(table.name, key_columns(table))


@functools.lru_cache(maxsize=_WRITE_TEXTS_MAX)
def _delete_row(table_name: str, keys: tuple[str, ...]) -> str:
    """Positional parameters: the key values."""
    match = " AND ".join(f"{q(c)} = ?{i}" for i, c in enumerate(keys, start=1))
    return f"DELETE FROM {q(table_name)} WHERE {match}"


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
