"""`write_after`: batches derived from a conditional batch are written when, and only when, it applies."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import (
    Batch,
    FollowingWriteError,
    Put,
    RowAbsent,
    RowQuery,
    StaticMatches,
    StorageBackend,
    StorageError,
    write_all,
)

from tests.sim.faults import FaultPlan

from .support import read_all
from .tables import EVENTS, KV, LEDGER


def _post(scope: str, epoch: int, seq: int) -> Batch:
    return Batch(
        LEDGER.partition(scope, "acct"),
        puts=(Put((seq,), {"amount": 10}),),
        static_values={"epoch": epoch},
        conditions=(StaticMatches({"epoch": epoch if seq > 1 else None}),),
    )


def _journal(scope: str, seq: int) -> list[Batch]:
    return [
        Batch(KV.partition(scope, f"entry-{seq}"), puts=(Put((), {"v": "posted", "n": seq}),)),
        Batch(EVENTS.partition(scope, "acct"), puts=(Put((seq, f"e{seq}"), {"body": "posted"}),)),
    ]


async def _journal_rows(backend: StorageBackend, scope: str) -> list[object]:
    events = await read_all(backend, RowQuery(EVENTS.partition(scope, "acct")))
    return [r["ts"] for r in events]


async def test_following_batches_are_written_when_the_batch_applies(
    backend: StorageBackend, scope: str
) -> None:
    assert (await backend.write_after(_post(scope, 1, 1), _journal(scope, 1))).applied
    assert (await backend.write_after(_post(scope, 1, 2), _journal(scope, 2))).applied
    assert await _journal_rows(backend, scope) == [1, 2]
    row = await backend.read_row(KV.partition(scope, "entry-2"))
    assert row is not None
    assert dict(row.values) == {"v": "posted", "n": 2}


async def test_following_batches_are_not_written_when_the_condition_fails(
    backend: StorageBackend, scope: str
) -> None:
    assert (await backend.write_after(_post(scope, 1, 1), _journal(scope, 1))).applied
    fenced = await backend.write_after(_post(scope, 7, 2), _journal(scope, 2))
    assert not fenced.applied
    assert await _journal_rows(backend, scope) == [1]
    assert await backend.read_row(KV.partition(scope, "entry-2")) is None


@pytest.mark.parametrize("applied_before_timeout", [True, False])
async def test_a_lost_answer_still_writes_the_following_batches_once(
    backend: StorageBackend, faults: FaultPlan, scope: str, applied_before_timeout: bool
) -> None:
    faults.conditional_timeouts = 1
    faults.applied_before_timeout = applied_before_timeout
    outcome = await backend.write_after(_post(scope, 1, 1), _journal(scope, 1))
    assert (outcome.applied, outcome.resolved_unknown) == (True, True)
    assert await _journal_rows(backend, scope) == [1]


async def test_following_batches_must_be_unconditional(backend: StorageBackend, scope: str) -> None:
    conditional = Batch(KV.partition(scope, "x"), puts=(Put((), {"v": "x"}),), conditions=(RowAbsent(()),))
    with pytest.raises(InvariantViolation):
        await backend.write_after(_post(scope, 1, 1), [conditional])
    assert await backend.read_row(KV.partition(scope, "x")) is None


async def test_a_following_batch_that_fails_once_the_batch_applied_says_so(
    backend: StorageBackend, scope: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the following batches are written after the batch (Cassandra, memory), one that fails raises
    FollowingWriteError: the batch applied, and the caller writes them again (they are idempotent).
    SQLite writes them in the batch's own transaction."""

    async def failing(following: Sequence[Batch]) -> None:
        raise StorageError("injected: the journal's node went away")

    monkeypatch.setattr(backend, "write_following", failing)
    try:
        outcome = await backend.write_after(_post(scope, 1, 1), _journal(scope, 1))
    except FollowingWriteError:
        monkeypatch.undo()
        assert await _journal_rows(backend, scope) == []
        await write_all(backend, _journal(scope, 1))
    else:
        assert outcome.applied and backend.name == "sqlite"
    assert await backend.read_row(LEDGER.partition(scope, "acct"), (1,)) is not None
    assert await _journal_rows(backend, scope) == [1]
