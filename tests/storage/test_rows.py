"""Plain reads and writes: types, partial overwrites, static columns, deletes and tenant scoping."""

from __future__ import annotations

from jubao_server.storage.contract import (
    INT64_MAX,
    INT64_MIN,
    Batch,
    Consistency,
    Delete,
    Put,
    RowQuery,
    StorageBackend,
    Value,
)

from .support import put_row, read_all
from .tables import KV, LEDGER

_LEDGER_EMPTY: dict[str, Value] = {
    "amount": None,
    "note": None,
    "flag": None,
    "payload": None,
    "balance": None,
    "epoch": None,
}

_ROUND_TRIP: dict[int, dict[str, Value]] = {
    INT64_MIN: {"amount": INT64_MIN, "note": "", "flag": False, "payload": b""},
    -1: {"amount": -1, "note": "naïve — 数据 😀", "flag": True, "payload": b"\x00\xff" * 4},
    0: {"amount": None, "note": None, "flag": None, "payload": None},
    INT64_MAX: {"amount": INT64_MAX, "note": "x" * 10_000, "flag": True, "payload": bytes(range(256))},
}


def _typed(values: dict[str, Value]) -> dict[str, tuple[type, Value]]:
    """Values with their exact types, so that 1 and True (or b'' and '') do not compare equal."""
    return {column: (type(value), value) for column, value in values.items()}


async def test_every_column_type_round_trips(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    for seq, values in _ROUND_TRIP.items():
        await put_row(backend, partition, (seq,), values)
    for seq, values in _ROUND_TRIP.items():
        row = await backend.read_row(partition, (seq,))
        assert row is not None
        assert _typed(dict(row.values)) == _typed({**_LEDGER_EMPTY, "seq": seq, **values})


async def test_row_without_clustering_round_trips(backend: StorageBackend, scope: str) -> None:
    partition = KV.partition(scope, "ключ/🔑")
    assert await backend.read_row(partition) is None
    await put_row(backend, partition, (), {"v": "value", "n": INT64_MIN})
    row = await backend.read_row(partition, (), Consistency.SERIAL)
    assert row is not None
    assert dict(row.values) == {"v": "value", "n": INT64_MIN}


async def test_put_overwrites_only_listed_columns(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(backend, partition, (1,), {"amount": 5, "note": "a", "flag": True, "payload": b"p"})
    await put_row(backend, partition, (1,), {"note": "b"})
    await put_row(backend, partition, (1,), {"payload": None})
    row = await backend.read_row(partition, (1,))
    assert row is not None
    assert dict(row.values) == {**_LEDGER_EMPTY, "seq": 1, "amount": 5, "note": "b", "flag": True}


async def test_static_columns_belong_to_the_partition(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    assert await backend.read_static(partition) is None
    await backend.write(Batch(partition, static_values={"balance": 100, "epoch": 1}))
    static = await backend.read_static(partition)
    assert static is not None
    assert dict(static.values) == {"balance": 100, "epoch": 1}
    assert (await backend.read_page(RowQuery(partition))).rows == ()
    await put_row(backend, partition, (7,), {"amount": 3})
    await backend.write(Batch(partition, static_values={"epoch": 2}))
    row = await backend.read_row(partition, (7,))
    assert row is not None
    assert dict(row.values) == {**_LEDGER_EMPTY, "seq": 7, "amount": 3, "balance": 100, "epoch": 2}


async def test_deletes(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    for seq in (1, 2, 3):
        await put_row(backend, partition, (seq,), {"amount": seq})
    await backend.write(Batch(partition, static_values={"balance": 6}))
    batch = Batch(
        partition,
        puts=(Put((4,), {"amount": 4}),),
        deletes=(Delete((1,)), Delete((3,)), Delete((99,))),
    )
    assert (await backend.write(batch)).applied
    assert await backend.read_row(partition, (1,)) is None
    assert [row["seq"] for row in await read_all(backend, RowQuery(partition))] == [2, 4]
    await backend.write(Batch(partition, deletes=(Delete((2,)), Delete((4,)))))
    assert await read_all(backend, RowQuery(partition)) == []
    static = await backend.read_static(partition)
    assert static is not None
    assert static["balance"] == 6
    kv = KV.partition(scope, "k")
    await put_row(backend, kv, (), {"v": "x"})
    await backend.write(Batch(kv, deletes=(Delete(()),)))
    assert await backend.read_row(kv) is None


async def test_scopes_never_meet(backend: StorageBackend, scope: str) -> None:
    other = scope + "b"
    await put_row(backend, LEDGER.partition(scope, "acct"), (1,), {"amount": 1})
    await backend.write(Batch(LEDGER.partition(scope, "acct"), static_values={"balance": 1}))
    await put_row(backend, KV.partition(scope, "k"), (), {"v": "mine"})
    assert await backend.read_row(LEDGER.partition(other, "acct"), (1,)) is None
    assert await backend.read_static(LEDGER.partition(other, "acct")) is None
    assert (await backend.read_page(RowQuery(LEDGER.partition(other, "acct")))).rows == ()
    assert await backend.read_row(KV.partition(other, "k")) is None
    assert len((await backend.read_page(RowQuery(LEDGER.partition(scope, "acct")))).rows) == 1


# More rows than one statement takes on SQLite (`limits.sqlite_statement_rows_max`), and not a power of two.
MANY_ROWS = 77


async def test_many_rows_of_changing_columns_are_written(backend: StorageBackend, scope: str) -> None:
    """Runs of ten puts of one shape (on SQLite one statement of 16 rows, the last one repeated) with a
    put of another shape between them, some with a TTL, and a static write; then a `write_after` whose
    following batches write some of those rows again, delete others and write the static columns: each
    row as its writes left it."""
    partition = LEDGER.partition(scope, "many")
    puts = tuple(
        Put(
            (seq,),
            {"amount": seq} if seq % 11 else {"amount": seq, "note": f"n{seq}"},
            ttl_s=3600 if seq % 7 else None,
        )
        for seq in range(MANY_ROWS)
    )
    await backend.write(Batch(partition, puts=puts, static_values={"balance": 1}))
    again = Batch(partition, puts=(Put((3,), {"note": "again"}), Put((4,), {"amount": -4})))
    gone = Batch(partition, deletes=(Delete((5,)), Delete((6,))), static_values={"balance": 2, "epoch": 3})
    first = Batch(LEDGER.partition(scope, "first"), puts=(Put((1,), {"amount": 1}),))
    assert (await backend.write_after(first, [again, gone])).applied
    rows = {row["seq"]: row for row in await read_all(backend, RowQuery(partition))}
    expected: dict[int, tuple[Value, Value]] = {
        seq: (seq, f"n{seq}" if seq % 11 == 0 else None) for seq in range(MANY_ROWS) if seq not in (5, 6)
    }
    expected[3] = (3, "again")
    expected[4] = (-4, None)
    assert {seq: (row["amount"], row["note"]) for seq, row in rows.items()} == expected
    assert {(row["balance"], row["epoch"]) for row in rows.values()} == {(2, 3)}
