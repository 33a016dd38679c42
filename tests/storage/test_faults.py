"""Injected faults: lost answers of conditional writes are resolved, storage errors write nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from jubao_server.limits import cas_unknown_retries_max
from jubao_server.storage.contract import (
    Batch,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    StorageBackend,
    StorageError,
)

from tests.sim.faults import FaultPlan

from .support import migration_sets, put_row
from .tables import KV, LEDGER


def _insert(scope: str, value: str) -> Batch:
    return Batch(KV.partition(scope, "k"), puts=(Put((), {"v": value}),), conditions=(RowAbsent(()),))


@pytest.mark.parametrize("applied_before_timeout", [True, False])
async def test_lost_answer_of_an_applied_write_is_resolved(
    backend: StorageBackend, faults: FaultPlan, scope: str, applied_before_timeout: bool
) -> None:
    faults.conditional_timeouts = 1
    faults.applied_before_timeout = applied_before_timeout
    outcome = await backend.write(_insert(scope, "mine"))
    assert (outcome.applied, outcome.resolved_unknown) == (True, True)
    assert faults.conditional_timeouts == 0
    row = await backend.read_row(KV.partition(scope, "k"))
    assert row is not None
    assert dict(row.values) == {"v": "mine", "n": None}


@pytest.mark.parametrize("applied_before_timeout", [True, False])
async def test_lost_answer_of_a_failed_write_is_resolved(
    backend: StorageBackend, faults: FaultPlan, scope: str, applied_before_timeout: bool
) -> None:
    await put_row(backend, KV.partition(scope, "k"), (), {"v": "theirs", "n": 1})
    faults.conditional_timeouts = 1
    faults.applied_before_timeout = applied_before_timeout
    outcome = await backend.write(_insert(scope, "mine"))
    assert (outcome.applied, outcome.resolved_unknown) == (False, True)
    current = outcome.current_rows[()]
    assert current is not None
    assert dict(current.values) == {"v": "theirs", "n": 1}
    row = await backend.read_row(KV.partition(scope, "k"))
    assert row is not None
    assert row["v"] == "theirs"


async def test_clustered_batch_with_lost_answer_applies_once(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(backend, partition, (1,), {"amount": 1, "note": "v1"})
    faults.conditional_timeouts = 2
    faults.applied_before_timeout = False
    batch = Batch(
        partition,
        puts=(Put((1,), {"note": "v2"}), Put((2,), {"amount": 2})),
        static_values={"balance": 3},
        conditions=(RowMatches((1,), {"note": "v1"}), RowAbsent((2,))),
    )
    outcome = await backend.write(batch)
    assert (outcome.applied, outcome.resolved_unknown) == (True, True)
    assert faults.conditional_timeouts == 0
    rows = (await backend.read_page(RowQuery(partition))).rows
    assert [(r["seq"], r["amount"], r["note"], r["balance"]) for r in rows] == [
        (1, 1, "v2", 3),
        (2, 2, None, 3),
    ]


async def test_an_outcome_that_stays_unknown_is_a_storage_error(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    faults.conditional_timeouts = cas_unknown_retries_max + 1
    faults.applied_before_timeout = False
    with pytest.raises(StorageError):
        await backend.write(_insert(scope, "mine"))
    assert await backend.read_row(KV.partition(scope, "k")) is None


async def test_unconditional_writes_never_lose_their_answer(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    faults.conditional_timeouts = 1
    outcome = await backend.write(Batch(KV.partition(scope, "k"), puts=(Put((), {"v": "x"}),)))
    assert (outcome.applied, outcome.resolved_unknown) == (True, False)
    assert faults.conditional_timeouts == 1


async def test_injected_storage_errors_write_nothing(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    kv = KV.partition(scope, "k")
    ledger = LEDGER.partition(scope, "acct")
    faults.storage_errors = 1
    with pytest.raises(StorageError):
        await backend.write(_insert(scope, "lost"))
    assert await backend.read_row(kv) is None
    operations: list[Callable[[], Awaitable[object]]] = [
        lambda: backend.read_row(kv),
        lambda: backend.read_static(ledger),
        lambda: backend.read_page(RowQuery(ledger)),
        lambda: backend.write(Batch(kv, puts=(Put((), {"v": "lost"}),))),
        lambda: backend.migrate(migration_sets(backend.name)),
    ]
    for operation in operations:
        faults.storage_errors = 1
        with pytest.raises(StorageError):
            await operation()
    assert faults.storage_errors == 0
    assert await backend.read_row(kv) is None
