"""`write_after`: batches derived from a conditional batch are written when, and only when, it applies;
and its guards, conditional batches of other partitions stored in the batch's transaction (where the
backend writes them: SQLite, and memory when told), all or nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import (
    Batch,
    BulkPut,
    Following,
    FollowingWriteError,
    Put,
    RowAbsent,
    RowQuery,
    StaticMatches,
    StorageBackend,
    StorageError,
)
from jubao_server.storage.memory import MemoryBackend

from tests.backends import open_test_backend
from tests.sim.faults import FaultPlan

from .support import migrated, read_all
from .tables import EVENTS, KV, LEDGER


def _post(scope: str, epoch: int, seq: int) -> Batch:
    return Batch(
        LEDGER.partition(scope, "acct"),
        puts=(Put((seq,), {"amount": 10}),),
        static_values={"epoch": epoch},
        conditions=(StaticMatches({"epoch": epoch if seq > 1 else None}),),
    )


def _journal(scope: str, seq: int) -> list[Following]:
    """What a journal writes after its commit: a batch, and a bulk put over two partitions."""
    events = ((("acct",), (seq, f"e{seq}"), ("posted",)), (("audit",), (seq, f"a{seq}"), ("posted",)))
    return [
        Batch(KV.partition(scope, f"entry-{seq}"), puts=(Put((), {"v": "posted", "n": seq}),)),
        BulkPut(EVENTS, scope, ("body",), events),
    ]


async def _journal_rows(backend: StorageBackend, scope: str) -> list[object]:
    """The journal's sequence numbers, as its bulk put wrote them in both its partitions."""
    events = await read_all(backend, RowQuery(EVENTS.partition(scope, "acct")))
    audit = await read_all(backend, RowQuery(EVENTS.partition(scope, "audit")))
    assert [r["ts"] for r in audit] == [r["ts"] for r in events]
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

    async def failing(following: Sequence[Following]) -> None:
        raise StorageError("injected: the journal's node went away")

    monkeypatch.setattr(backend, "write_following", failing)
    try:
        outcome = await backend.write_after(_post(scope, 1, 1), _journal(scope, 1))
    except FollowingWriteError:
        monkeypatch.undo()
        assert await _journal_rows(backend, scope) == []
        await backend.write_following(_journal(scope, 1))
    else:
        assert outcome.applied and backend.name == "sqlite"
    assert await backend.read_row(LEDGER.partition(scope, "acct"), (1,)) is not None
    assert await _journal_rows(backend, scope) == [1]


@pytest.fixture(params=["sqlite", "memory"])
async def guarded(
    request: pytest.FixtureRequest, tmp_path: Path, faults: FaultPlan
) -> AsyncIterator[StorageBackend]:
    """A backend that writes guards: SQLite, and memory told to."""
    if request.param == "memory":
        opening: StorageBackend = MemoryBackend(SYSTEM_CLOCK, faults=faults, guarded_writes=True)
    else:
        opening = await open_test_backend(request.param, tmp_path, faults)
    async with migrated(opening) as opened:
        yield opened


def _claim(scope: str, name: str, body: str = "claimed") -> Batch:
    return Batch(KV.partition(scope, name), puts=(Put((), {"v": body}),), conditions=(RowAbsent(()),))


async def _stored(backend: StorageBackend, scope: str) -> tuple[list[object], list[object]]:
    """The ledger rows and the journal rows stored."""
    posts = await read_all(backend, RowQuery(LEDGER.partition(scope, "acct")))
    return [r["seq"] for r in posts], await _journal_rows(backend, scope)


async def _value(backend: StorageBackend, scope: str, name: str) -> object:
    row = await backend.read_row(KV.partition(scope, name))
    return None if row is None else row["v"]


async def test_guards_are_written_with_the_batch(guarded: StorageBackend, scope: str) -> None:
    outcome = await guarded.write_after(_post(scope, 1, 1), _journal(scope, 1), [_claim(scope, "r1")])
    assert outcome.applied and outcome.failed_guards == ()
    assert await _stored(guarded, scope) == ([1], [1])
    assert await _value(guarded, scope, "r1") == "claimed"


async def test_a_failed_guard_leaves_everything_unwritten(guarded: StorageBackend, scope: str) -> None:
    """The guards that held are not written either, and the answer names each guard that failed."""
    assert (await guarded.write(_claim(scope, "taken", "first"))).applied
    guards = [_claim(scope, "r1"), _claim(scope, "taken"), _claim(scope, "r2"), _claim(scope, "taken")]
    outcome = await guarded.write_after(_post(scope, 1, 1), _journal(scope, 1), guards)
    assert not outcome.applied
    assert outcome.failed_guards == (1, 3)
    assert await _stored(guarded, scope) == ([], [])
    assert [await _value(guarded, scope, name) for name in ("r1", "taken", "r2")] == [None, "first", None]


async def test_a_guard_sees_what_the_guards_before_it_write(guarded: StorageBackend, scope: str) -> None:
    outcome = await guarded.write_after(
        _post(scope, 1, 1), _journal(scope, 1), [_claim(scope, "r1", "one"), _claim(scope, "r1", "two")]
    )
    assert (outcome.applied, outcome.failed_guards) == (False, (1,))
    assert await _value(guarded, scope, "r1") is None
    assert await _stored(guarded, scope) == ([], [])


async def test_the_batch_conditions_come_before_its_guards(guarded: StorageBackend, scope: str) -> None:
    """A fenced batch answers as without guards (the current static columns), whatever its guards."""
    assert (await guarded.write_after(_post(scope, 1, 1), _journal(scope, 1))).applied
    assert (await guarded.write(_claim(scope, "taken"))).applied
    fenced = await guarded.write_after(_post(scope, 7, 2), _journal(scope, 2), [_claim(scope, "taken")])
    assert (fenced.applied, fenced.failed_guards) == (False, ())
    assert fenced.current_static is not None and fenced.current_static["epoch"] == 1
    assert await _stored(guarded, scope) == ([1], [1])


@pytest.mark.parametrize("applied_before_timeout", [True, False])
async def test_a_lost_answer_of_a_guarded_write_is_resolved_once(
    guarded: StorageBackend, faults: FaultPlan, scope: str, applied_before_timeout: bool
) -> None:
    """Resolved on the batch alone (its guards applied exactly when it did); a resend that finds its own
    guard's row would fail it, so the guard must not be sent twice once applied."""
    faults.conditional_timeouts = 1
    faults.applied_before_timeout = applied_before_timeout
    outcome = await guarded.write_after(_post(scope, 1, 1), _journal(scope, 1), [_claim(scope, "r1")])
    assert (outcome.applied, outcome.resolved_unknown, outcome.failed_guards) == (True, True, ())
    assert await _stored(guarded, scope) == ([1], [1])
    assert await _value(guarded, scope, "r1") == "claimed"


async def test_a_backend_writes_guards_only_where_it_says_so(backend: StorageBackend, scope: str) -> None:
    """Every backend: Cassandra (and memory by default) refuse guards, a programmer error; SQLite writes
    them."""
    write = backend.write_after(_post(scope, 1, 1), _journal(scope, 1), [_claim(scope, "r1")])
    if backend.guarded_writes:
        assert (await write).applied
        assert await _value(backend, scope, "r1") == "claimed"
    else:
        with pytest.raises(InvariantViolation):
            await write
        assert await _value(backend, scope, "r1") is None
        assert await _stored(backend, scope) == ([], [])
