"""Range reads inside a partition: order, paging, reverse, and inclusive/exclusive (prefix) bounds."""

from __future__ import annotations

import random
from typing import Final

import pytest
from jubao_server import limits
from jubao_server.storage import contract
from jubao_server.storage.contract import (
    INT64_MAX,
    INT64_MIN,
    Batch,
    Bound,
    Key,
    PartitionRef,
    Put,
    RowQuery,
    StorageBackend,
)

from .support import clustering_of, read_all, read_pages
from .tables import EVENTS, LEDGER

ROWS: Final = 1234
PAGE_ROWS: Final = 100
WRITE_BATCH_ROWS: Final = 100
SEQS: Final = sorted([INT64_MIN, INT64_MAX, *(3 * i - 1000 for i in range(ROWS - 2))])


async def _fill_ledger(backend: StorageBackend, partition: PartitionRef) -> None:
    shuffled = random.Random(1234).sample(SEQS, len(SEQS))
    for start in range(0, len(shuffled), WRITE_BATCH_ROWS):
        chunk = shuffled[start : start + WRITE_BATCH_ROWS]
        puts = tuple(Put((seq,), {"amount": seq, "note": str(seq)}) for seq in chunk)
        assert (await backend.write(Batch(partition, puts=puts))).applied


def _inside(key: Key, lower: Bound | None, upper: Bound | None) -> bool:
    """The reference semantics: a bound compares the clustering prefix of its own length."""
    if lower is not None:
        prefix = key[: len(lower.values)]
        if prefix < lower.values or (prefix == lower.values and not lower.inclusive):
            return False
    if upper is not None:
        prefix = key[: len(upper.values)]
        if prefix > upper.values or (prefix == upper.values and not upper.inclusive):
            return False
    return True


async def _assert_range(
    backend: StorageBackend, query: RowQuery, keys: list[Key], lower: Bound | None, upper: Bound | None
) -> None:
    expected = [k for k in keys if _inside(k, lower, upper)]
    for reverse in (False, True):
        bounded = RowQuery(query.partition, lower=lower, upper=upper, reverse=reverse, limit=query.limit)
        got = [clustering_of(query.partition, row) for row in await read_all(backend, bounded)]
        assert got == (expected[::-1] if reverse else expected), (lower, upper, reverse)


async def test_paging_walks_a_large_partition_in_order(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "big")
    await _fill_ledger(backend, partition)
    for reverse in (False, True):
        pages = await read_pages(backend, RowQuery(partition, reverse=reverse, limit=PAGE_ROWS))
        assert len(pages) <= ROWS // PAGE_ROWS + 2
        assert all(len(page.rows) <= PAGE_ROWS for page in pages)
        seqs = [row["seq"] for page in pages for row in page.rows]
        assert seqs == (SEQS[::-1] if reverse else SEQS)
        assert all(row["note"] == str(row["seq"]) for page in pages for row in page.rows)
    whole = await backend.read_page(RowQuery(partition, limit=limits.storage_page_rows_max))
    assert len(whole.rows) == ROWS
    assert whole.next_after is None


class _TooLong(Exception):
    pass


async def test_a_whole_range_read_stops_at_its_bound_with_the_callers_error(
    backend: StorageBackend, scope: str
) -> None:
    partition = LEDGER.partition(scope, "big")
    await _fill_ledger(backend, partition)
    query = RowQuery(partition, limit=PAGE_ROWS)
    pages_max = -(-ROWS // PAGE_ROWS)
    assert [row["seq"] async for row in contract.read_all(backend, query, pages_max, _TooLong)] == SEQS
    seen = []
    with pytest.raises(_TooLong):
        async for row in contract.read_all(backend, query, pages_max - 1, _TooLong):
            seen.append(row["seq"])
    assert seen == SEQS[: (pages_max - 1) * PAGE_ROWS]


async def test_bounds_on_one_clustering_column(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "big")
    await _fill_ledger(backend, partition)
    keys: list[Key] = [(seq,) for seq in SEQS]
    query = RowQuery(partition, limit=PAGE_ROWS)
    cases = [
        (Bound((-1000,), True), Bound((-700,), False)),
        (Bound((-1000,), False), Bound((-700,), True)),
        (Bound((1,), True), None),
        (None, Bound((0,), True)),
        (Bound((INT64_MIN,), False), Bound((INT64_MAX,), False)),
        (Bound((500,), True), Bound((400,), True)),
    ]
    for lower, upper in cases:
        await _assert_range(backend, query, keys, lower, upper)


async def test_prefix_bounds_on_two_clustering_columns(backend: StorageBackend, scope: str) -> None:
    partition = EVENTS.partition(scope, "stream")
    pairs = [(ts, ident) for ts in range(1, 6) for ident in ("a", "b", "c")]
    keys: list[Key] = list(pairs)
    puts = tuple(Put((ts, ident), {"body": f"{ts}{ident}"}) for ts, ident in reversed(pairs))
    assert (await backend.write(Batch(partition, puts=puts))).applied
    query = RowQuery(partition, limit=2)
    cases = [
        (None, None),
        (Bound((2,), True), None),
        (Bound((2,), False), None),
        (None, Bound((4,), True)),
        (None, Bound((4,), False)),
        (Bound((2, "b"), False), Bound((4,), True)),
        (Bound((2, "b"), True), Bound((4, "a"), False)),
        (Bound((3,), True), Bound((3,), True)),
        (Bound((3, "c"), True), Bound((3, "c"), True)),
        (Bound((3,), False), Bound((4,), False)),
    ]
    for lower, upper in cases:
        await _assert_range(backend, query, keys, lower, upper)


async def test_a_page_read_as_columns_is_the_page_of_rows(backend: StorageBackend, scope: str) -> None:
    """`read_columns` pages as `read_page` does (bounds, reverse, `next_after`) and gives each named
    column's values in row order: booleans, blobs and nulls as rows give them."""
    partition = LEDGER.partition(scope, "columns")
    puts = tuple(
        Put(
            (seq,),
            {"amount": seq, "note": None if seq % 3 else str(seq), "flag": seq % 2 == 0, "payload": b"x"},
        )
        for seq in range(WRITE_BATCH_ROWS)
    )
    assert (await backend.write(Batch(partition, puts=puts))).applied
    names = ("seq", "amount", "note", "flag", "payload")
    for reverse in (False, True):
        query = RowQuery(
            partition, lower=Bound((10,), inclusive=False), reverse=reverse, limit=PAGE_ROWS // 3
        )
        pages = await read_pages(backend, query)
        for page in pages:
            columns = await backend.read_columns(query, names)
            assert columns.row_count == len(page.rows)
            assert columns.next_after == page.next_after
            assert columns.columns == {name: [row[name] for row in page.rows] for name in names}
            assert all(isinstance(flag, bool) for flag in columns.columns["flag"])
            if page.next_after is not None:
                query = query.after(page.next_after)
    empty = await backend.read_columns(RowQuery(LEDGER.partition(scope, "none")), names)
    assert (empty.row_count, empty.next_after, empty.columns) == (0, None, {name: [] for name in names})
