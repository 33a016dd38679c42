"""Memory-only behaviour: TTL on the injected clock, purging expired rows, its schema files, closing, its
sorted keys."""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jubao_server import limits
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import (
    Batch,
    ColumnType,
    Key,
    MigrationError,
    MigrationSet,
    Put,
    RowQuery,
    StorageError,
    Table,
)
from jubao_server.storage.memory import MemoryBackend
from jubao_server.storage.memory.keys import SortedKeys

from tests.sim.virtual_time import SimClock

from .support import migration_sets, put_row, read_all
from .tables import KV, LEDGER

TTL_S: Final = 60
ROWS: Final = 100


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


@pytest.fixture
async def memory(clock: SimClock) -> MemoryBackend:
    backend = MemoryBackend(clock)
    await backend.migrate(migration_sets(backend.name))
    return backend


async def test_rows_expire_on_the_injected_clock(memory: MemoryBackend, clock: SimClock, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(memory, KV.partition(scope, "k"), (), {"v": "x"}, ttl_s=TTL_S)
    await put_row(memory, partition, (1,), {"note": "short"}, ttl_s=TTL_S)
    await put_row(memory, partition, (2,), {"note": "renewed"}, ttl_s=TTL_S)
    clock.advance(TTL_S - 0.001)
    await put_row(memory, partition, (2,), {"amount": 2}, ttl_s=TTL_S)
    assert await memory.read_row(KV.partition(scope, "k")) is not None
    clock.advance(0.001)
    assert await memory.read_row(KV.partition(scope, "k")) is None
    assert [(r["seq"], r["note"]) for r in await read_all(memory, RowQuery(partition))] == [(2, "renewed")]
    clock.advance(TTL_S)
    assert await read_all(memory, RowQuery(partition)) == []


async def test_expired_rows_are_purged(memory: MemoryBackend, clock: SimClock, scope: str) -> None:
    """Writes drop the rows that expired, so a long simulation does not keep every row it ever wrote."""
    for index in range(ROWS):
        await put_row(memory, KV.partition(scope, f"k{index}"), (), {"v": "x"}, ttl_s=TTL_S)
    await put_row(memory, KV.partition(scope, "kept"), (), {"v": "x"})
    clock.advance(TTL_S)
    await put_row(memory, KV.partition(scope, "later"), (), {"v": "y"})
    assert list(memory._tables[KV.name].partitions) == [(scope, "kept"), (scope, "later")]
    assert memory._expiries == []


async def test_tables_come_from_schema_files_and_declared_shapes(tmp_path: Path, clock: SimClock) -> None:
    backend = MemoryBackend(clock)
    with pytest.raises(InvariantViolation, match="no such table"):
        await backend.read_row(KV.partition("t", "k"))
    folder = tmp_path / "schema"
    folder.mkdir()
    (folder / "0001_kv.tables").write_text("-- the key-value table\nconf_kv\n")
    assert await backend.migrate([MigrationSet("app", folder)]) == ["app/0001_kv.tables"]
    assert await backend.migrate([MigrationSet("app", folder)]) == []
    assert backend.tables == ("conf_kv",)
    await put_row(backend, KV.partition("t", "k"), (), {"v": "x"})
    other_shape = Table(name="conf_kv", partition_key=("k",), columns={"k": ColumnType.TEXT})
    with pytest.raises(InvariantViolation, match="two shapes"):
        await backend.read_row(other_shape.partition("t", "k"))
    (folder / "0001_kv.tables").write_text("conf_kv\nconf_ledger\n")
    with pytest.raises(MigrationError, match=r"0001_kv\.tables"):
        await backend.migrate([MigrationSet("app", folder)])


@pytest.mark.parametrize(
    ("name", "text"),
    [("0002_bad.tables", "Not-A-Name\n"), ("0002_empty.tables", "-- nothing\n"), ("2_short.tables", "t\n")],
)
async def test_malformed_schema_files_are_refused(
    tmp_path: Path, clock: SimClock, name: str, text: str
) -> None:
    (tmp_path / name).write_text(text)
    backend = MemoryBackend(clock)
    with pytest.raises(MigrationError):
        await backend.migrate([MigrationSet("app", tmp_path)])
    assert backend.tables == ()


async def test_closing_drops_everything(memory: MemoryBackend, scope: str) -> None:
    await memory.write(Batch(KV.partition(scope, "k"), puts=(Put((), {"v": "x"}),)))
    assert await memory.ready()
    await memory.close()
    await memory.close()
    assert not await memory.ready()
    with pytest.raises(StorageError, match="closed"):
        await memory.read_row(KV.partition(scope, "k"))
    assert memory.tables == ()


KEY_PARTS: Final = st.tuples(st.sampled_from(("a", "b", "c")), st.integers(0, 40))
BOUND: Final = st.none() | st.tuples(
    st.one_of(st.tuples(st.sampled_from(("a", "b", "c"))), KEY_PARTS), st.booleans()
)


def _within(key: Key, lower: tuple[Key, bool] | None, upper: tuple[Key, bool] | None) -> bool:
    """A bound compares the key cut to its own length; inclusive or not."""
    if lower is not None:
        cut = key[: len(lower[0])]
        if cut < lower[0] or (cut == lower[0] and not lower[1]):
            return False
    if upper is not None:
        cut = key[: len(upper[0])]
        if cut > upper[0] or (cut == upper[0] and not upper[1]):
            return False
    return True


@given(
    steps=st.lists(st.tuples(st.booleans(), KEY_PARTS), max_size=300),
    lower=BOUND,
    upper=BOUND,
    reverse=st.booleans(),
)
@hypothesis_settings(max_examples=200, deadline=None)
def test_sorted_keys_in_chunks_read_as_one_sorted_list(
    steps: list[tuple[bool, tuple[str, int]]],
    lower: tuple[Key, bool] | None,
    upper: tuple[Key, bool] | None,
    reverse: bool,
) -> None:
    """Keys added and removed in any order, over chunks of 4 (so chunks split and empty out), read in
    any range as a flat sorted list would."""
    expected: list[tuple[str, int]] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(limits, "memory_keys_chunk_max", 4)
        keys = SortedKeys()
        for adding, key in steps:
            if adding and key not in expected:
                keys.add(key)
                bisect.insort(expected, key)
            elif not adding and key in expected:
                keys.remove(key)
                expected.remove(key)
    within = [key for key in expected if _within(key, lower, upper)]
    assert len(keys) == len(expected)
    assert list(keys.between(lower, upper, reverse)) == (within[::-1] if reverse else within)
