"""SQLite-only behaviour: file layout, the TTL sweeper, lock errors, type checks and the lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import Batch, FaultPlan, Put, StorageError
from jubao_server.storage.sqlite import SqliteBackend

from .support import migration_sets, put_row
from .tables import KV, LEDGER

SWEEP_INTERVAL_MS: Final = 20
SWEEP_POLLS: Final = 250


@pytest.fixture
def settings(tmp_path: Path) -> SqliteSettings:
    return SqliteSettings(
        path=tmp_path / "nested" / "dirs" / "jubao.db",
        busy_timeout_ms=50,
        ttl_sweep_interval_ms=SWEEP_INTERVAL_MS,
    )


@pytest.fixture
async def backend(settings: SqliteSettings, faults: FaultPlan) -> AsyncIterator[SqliteBackend]:
    opened = await SqliteBackend.open(settings, faults)
    await opened.migrate(migration_sets("sqlite"))
    yield opened
    await opened.close()


def _raw(path: Path) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(path, isolation_level=None))


def _expire_everything(path: Path) -> None:
    with _raw(path) as connection:
        for table in ("conf_kv", "conf_ledger"):
            connection.execute(f"UPDATE {table} SET _expires_at_ms = 1 WHERE _expires_at_ms IS NOT NULL")


def _count(path: Path, table: str) -> int:
    with _raw(path) as connection:
        count: int = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count


async def test_the_file_is_created_in_wal_mode(backend: SqliteBackend) -> None:
    assert backend.path.is_file()
    with _raw(backend.path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sweep_deletes_expired_rows_only(backend: SqliteBackend, scope: str) -> None:
    await put_row(backend, KV.partition(scope, "gone"), (), {"v": "a"}, ttl_s=60)
    await put_row(backend, KV.partition(scope, "kept"), (), {"v": "b"})
    await put_row(backend, LEDGER.partition(scope, "acct"), (1,), {"amount": 1}, ttl_s=60)
    assert await backend.sweep_expired() == 0
    _expire_everything(backend.path)
    assert await backend.read_row(KV.partition(scope, "gone")) is None
    assert await backend.sweep_expired() == 2
    assert (_count(backend.path, "conf_kv"), _count(backend.path, "conf_ledger")) == (1, 0)


async def test_the_sweeper_runs_periodically(backend: SqliteBackend, scope: str) -> None:
    await put_row(backend, KV.partition(scope, "gone"), (), {"v": "a"}, ttl_s=60)
    _expire_everything(backend.path)
    for _ in range(SWEEP_POLLS):
        await asyncio.sleep(SWEEP_INTERVAL_MS / 1000)
        if not _count(backend.path, "conf_kv"):
            return
    pytest.fail("the periodic sweeper did not delete the expired row")


async def test_a_held_write_lock_is_a_storage_error(backend: SqliteBackend, scope: str) -> None:
    partition = KV.partition(scope, "k")
    with _raw(backend.path) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match="locked"):
            await put_row(backend, partition, (), {"v": "x"})
        assert await backend.read_row(partition) is None
        other.execute("ROLLBACK")
    await put_row(backend, partition, (), {"v": "x"})


def test_values_must_match_column_types(scope: str) -> None:
    wrong: list[Callable[[], Batch]] = [
        lambda: Batch(KV.partition(scope, "k"), puts=(Put((), {"n": "1"}),)),
        lambda: Batch(KV.partition(scope, "k"), puts=(Put((), {"v": b"bytes"}),)),
        lambda: Batch(LEDGER.partition(scope, "acct"), puts=(Put((1,), {"flag": 1}),)),
        lambda: Batch(LEDGER.partition(scope, "acct"), puts=(Put(("1",), {"amount": 1}),)),
        lambda: Batch(LEDGER.partition(scope, 7), puts=(Put((1,), {"amount": 1}),)),
        lambda: Batch(LEDGER.partition(scope, "acct"), static_values={"balance": True}),
    ]
    for build in wrong:
        with pytest.raises(InvariantViolation):
            build()


async def test_ready_and_close(backend: SqliteBackend, faults: FaultPlan, scope: str) -> None:
    assert await backend.ready()
    faults.storage_errors = 1
    assert not await backend.ready()
    assert await backend.ready()
    await backend.close()
    await backend.close()
    assert not await backend.ready()
    with pytest.raises(StorageError, match="closed"):
        await backend.read_row(KV.partition(scope, "k"))
