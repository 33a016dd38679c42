"""`write_each`: independent batches in one call, each applied or not as if written one after another."""

from __future__ import annotations

import pytest
from jubao_server import limits
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Put,
    RowAbsent,
    RowMatches,
    StorageBackend,
    StorageError,
)

from tests.sim.faults import FaultPlan

from .support import put_row
from .tables import KV


def _put(scope: str, key: str, value: str, *, if_absent: bool = False) -> Batch:
    conditions = (RowAbsent(()),) if if_absent else ()
    return Batch(KV.partition(scope, key), puts=(Put((), {"v": value}),), conditions=conditions)


async def _value(backend: StorageBackend, scope: str, key: str) -> object:
    row = await backend.read_row(KV.partition(scope, key))
    return None if row is None else row["v"]


def _outcomes(results: list[BatchOutcome | StorageError]) -> list[BatchOutcome]:
    assert all(isinstance(result, BatchOutcome) for result in results)
    return [result for result in results if isinstance(result, BatchOutcome)]


async def test_a_later_batch_sees_what_an_earlier_one_wrote(backend: StorageBackend, scope: str) -> None:
    results = await backend.write_each(
        [
            _put(scope, "k", "first", if_absent=True),
            _put(scope, "k", "second", if_absent=True),
            Batch(
                KV.partition(scope, "k"),
                puts=(Put((), {"n": 1}),),
                conditions=(RowMatches((), {"v": "first"}),),
            ),
        ]
    )
    outcomes = _outcomes(results)
    assert [o.applied for o in outcomes] == [True, False, True]
    current = outcomes[1].current_rows[()]
    assert current is not None
    assert dict(current.values) == {"v": "first", "n": None}
    row = await backend.read_row(KV.partition(scope, "k"))
    assert row is not None
    assert dict(row.values) == {"v": "first", "n": 1}


async def test_each_batch_gets_its_own_outcome_in_order(backend: StorageBackend, scope: str) -> None:
    await put_row(backend, KV.partition(scope, "taken"), (), {"v": "old"})
    outcomes = _outcomes(
        await backend.write_each(
            [
                _put(scope, "a", "a", if_absent=True),
                _put(scope, "taken", "new", if_absent=True),
                _put(scope, "b", "b"),
                _put(scope, "taken", "overwritten"),
                _put(scope, "c", "c", if_absent=True),
            ]
        )
    )
    assert [o.applied for o in outcomes] == [True, False, True, True, True]
    current = outcomes[1].current_rows[()]
    assert current is not None
    assert current["v"] == "old"
    values = [await _value(backend, scope, key) for key in ("a", "taken", "b", "c")]
    assert values == ["a", "overwritten", "b", "c"]
    assert await backend.write_each([]) == []


async def test_a_failed_batch_leaves_the_others(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    faults.storage_errors = 1
    results = await backend.write_each(
        [
            _put(scope, "lost", "x", if_absent=True),
            _put(scope, "a", "a", if_absent=True),
            _put(scope, "b", "b"),
        ]
    )
    assert isinstance(results[0], StorageError)
    assert [isinstance(r, BatchOutcome) and r.applied for r in results[1:]] == [True, True]
    assert faults.storage_errors == 0
    values = [await _value(backend, scope, key) for key in ("lost", "a", "b")]
    assert values == [None, "a", "b"]


@pytest.mark.parametrize("applied_before_timeout", [True, False])
async def test_a_lost_answer_is_resolved_for_its_batch_alone(
    backend: StorageBackend, faults: FaultPlan, scope: str, applied_before_timeout: bool
) -> None:
    await put_row(backend, KV.partition(scope, "taken"), (), {"v": "old"})
    faults.conditional_timeouts = 1
    faults.applied_before_timeout = applied_before_timeout
    outcomes = _outcomes(
        await backend.write_each(
            [
                _put(scope, "a", "a"),
                _put(scope, "lost", "mine", if_absent=True),
                _put(scope, "taken", "new", if_absent=True),
            ]
        )
    )
    assert [(o.applied, o.resolved_unknown) for o in outcomes] == [
        (True, False),
        (True, True),
        (False, False),
    ]
    assert faults.conditional_timeouts == 0
    values = [await _value(backend, scope, key) for key in ("a", "lost", "taken")]
    assert values == ["a", "mine", "old"]


async def test_an_outcome_that_stays_unknown_fails_its_batch_alone(
    backend: StorageBackend, faults: FaultPlan, scope: str
) -> None:
    faults.conditional_timeouts = limits.cas_unknown_retries_max + 1
    faults.applied_before_timeout = False
    results = await backend.write_each([_put(scope, "lost", "mine", if_absent=True), _put(scope, "a", "a")])
    assert isinstance(results[0], StorageError)
    assert isinstance(results[1], BatchOutcome)
    assert results[1].applied
    assert [await _value(backend, scope, key) for key in ("lost", "a")] == [None, "a"]


async def test_write_each_is_bounded(backend: StorageBackend, scope: str) -> None:
    batches = [_put(scope, f"k{i}", "v") for i in range(limits.storage_write_each_batches_max + 1)]
    with pytest.raises(InvariantViolation):
        await backend.write_each(batches)
