"""The bulk put: rows of many partitions of one table, checked once when built, written after a batch
(`write_after`) or alone (`write_following`) as batches of their partitions would be."""

from __future__ import annotations

import pytest
from jubao_server import limits
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import Batch, BulkPut, BulkRow, Put, RowQuery, StorageBackend

from .support import read_all
from .tables import EVENTS, KV, LEDGER


def _events(scope: str, *rows: tuple[str, int, str]) -> BulkPut:
    """Events (stream, ts, body), each in its stream's partition."""
    return BulkPut(EVENTS, scope, ("body",), tuple(((s,), (ts, f"e{ts}"), (body,)) for s, ts, body in rows))


async def _bodies(backend: StorageBackend, scope: str, stream: str) -> list[tuple[object, object]]:
    return [(r["ts"], r["body"]) for r in await read_all(backend, RowQuery(EVENTS.partition(scope, stream)))]


async def test_a_bulk_put_after_a_batch_writes_each_row_in_its_partition(
    backend: StorageBackend, scope: str
) -> None:
    post = Batch(LEDGER.partition(scope, "acct"), puts=(Put((1,), {"amount": 10}),))
    bulk = _events(scope, ("a", 2, "two"), ("b", 1, "one"), ("a", 1, "first"))
    assert (await backend.write_after(post, [bulk])).applied
    assert await _bodies(backend, scope, "a") == [(1, "first"), (2, "two")]
    assert await _bodies(backend, scope, "b") == [(1, "one")]


async def test_a_bulk_put_writes_its_columns_and_keeps_the_others(
    backend: StorageBackend, scope: str
) -> None:
    """As a `Put`: the columns it lists are written, the others keep their values; written again with
    the same values (a journal written again after a crash), it leaves the same rows."""
    before = Batch(KV.partition(scope, "x"), puts=(Put((), {"v": "old", "n": 7}),))
    assert (await backend.write(before)).applied
    bulk = BulkPut(KV, scope, ("v",), ((("x",), (), ("new",)), (("y",), (), ("only",))))
    for _ in range(2):
        await backend.write_following([bulk])
        x = await backend.read_row(KV.partition(scope, "x"))
        y = await backend.read_row(KV.partition(scope, "y"))
        assert x is not None and dict(x.values) == {"v": "new", "n": 7}
        assert y is not None and dict(y.values) == {"v": "only", "n": None}


async def test_bulk_puts_and_batches_follow_a_batch_together(backend: StorageBackend, scope: str) -> None:
    post = Batch(LEDGER.partition(scope, "acct"), puts=(Put((1,), {"amount": 10}),))
    batch = Batch(KV.partition(scope, "k"), puts=(Put((), {"v": "batch"}),))
    assert (await backend.write_after(post, [_events(scope, ("s", 1, "bulk")), batch])).applied
    row = await backend.read_row(KV.partition(scope, "k"))
    assert row is not None and row["v"] == "batch"
    assert await _bodies(backend, scope, "s") == [(1, "bulk")]


def test_a_bulk_put_as_batches_of_its_partitions(scope: str) -> None:
    """`batches` (a backend's fallback): one batch per partition, in the rows' order, cut at
    `batch_rows_max`."""
    count = limits.batch_rows_max + 1
    bulk = _events(scope, *((("a" if i % 2 else "b"), i, "x") for i in range(2 * count)))
    batches = bulk.batches()
    assert [(b.partition.key, len(b.puts)) for b in batches] == [
        (("b",), limits.batch_rows_max),
        (("b",), 1),
        (("a",), limits.batch_rows_max),
        (("a",), 1),
    ]
    assert [p.clustering[0] for p in batches[0].puts[:3]] == [0, 2, 4]
    assert batches[0].puts[0].values == {"body": "x"}


@pytest.mark.parametrize(
    ("columns", "rows", "message"),
    [
        (("body",), (), "a bulk put of 0 rows"),
        (("body", "body"), ((("s",), (1, "i"), ("x", "y")),), "one twice"),
        (("ts",), ((("s",), (1, "i"), (2,)),), "not regular"),
        ((), ((("s",), (1, "i"), ()),), "put writes nothing"),
        (("body",), ((("s",), (1, "i"), ("x", "y")),), "2 values for 1 columns"),
        (("body",), ((("s",), (1, "i"), (3,)),), "bad value"),
        (("body",), ((("s",), ("one", "i"), ("x",)),), "bad value for ts"),
        (("body",), (((), (1, "i"), ("x",)),), "needs 1 values"),
        (("body",), ((("s",), (1, "i"), ("x",)), (("s",), (1, "i"), ("y",))), "written twice"),
    ],
)
def test_a_malformed_bulk_put_is_refused_when_built(
    scope: str, columns: tuple[str, ...], rows: tuple[BulkRow, ...], message: str
) -> None:
    with pytest.raises(InvariantViolation, match=message):
        BulkPut(EVENTS, scope, columns, rows)


def test_a_bulk_put_is_bounded(scope: str) -> None:
    with pytest.raises(InvariantViolation, match="needs a scope"):
        _events("", ("s", 1, "x"))
    rows = limits.storage_bulk_put_rows_max + 1
    with pytest.raises(InvariantViolation, match=f"a bulk put of {rows} rows"):
        _events(scope, *(("s", i, "x") for i in range(rows)))
    body = "x" * (limits.storage_bulk_put_bytes_max // 2)
    with pytest.raises(InvariantViolation, match="over storage_bulk_put_bytes_max"):
        _events(scope, ("s", 1, body), ("s", 2, body), ("s", 3, "x"))
