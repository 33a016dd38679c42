"""Conditional batches: insert races, compare-and-set, static fencing and all-or-nothing batches."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest
from jubao_server.invariants import InvariantViolation
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    Condition,
    Consistency,
    Delete,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    StaticMatches,
    StorageBackend,
    Table,
)
from jubao_server.storage.contract.values import Key

from .support import put_row, read_all
from .tables import EVENTS, KV, LEDGER

RACERS: Final = 32
CAS_WORKERS: Final = 16
CAS_ATTEMPTS: Final = 6


async def test_concurrent_inserts_have_one_winner(backend: StorageBackend, scope: str) -> None:
    partition = KV.partition(scope, "contested")

    async def insert(writer: int) -> BatchOutcome:
        put = Put((), {"v": f"writer-{writer}", "n": writer})
        return await backend.write(Batch(partition, puts=(put,), conditions=(RowAbsent(()),)))

    outcomes = await asyncio.gather(*(insert(w) for w in range(RACERS)))
    winners = [w for w, outcome in enumerate(outcomes) if outcome.applied]
    assert len(winners) == 1
    for outcome in outcomes:
        if not outcome.applied:
            current = outcome.current_rows[()]
            assert current is not None
            assert dict(current.values) == {"v": f"writer-{winners[0]}", "n": winners[0]}
    row = await backend.read_row(partition, (), Consistency.SERIAL)
    assert row is not None
    assert row["n"] == winners[0]


async def test_compare_and_set_counts_every_applied_increment(backend: StorageBackend, scope: str) -> None:
    partition = KV.partition(scope, "counter")
    await put_row(backend, partition, (), {"v": "start", "n": 0})

    async def increment(worker: int) -> int:
        applied = 0
        for attempt in range(CAS_ATTEMPTS):
            row = await backend.read_row(partition, (), Consistency.SERIAL)
            assert row is not None
            seen = row.as_int("n")
            put = Put((), {"n": seen + 1, "v": f"worker-{worker}-{attempt}"})
            batch = Batch(partition, puts=(put,), conditions=(RowMatches((), {"n": seen}),))
            outcome = await backend.write(batch)
            applied += outcome.applied
            assert outcome.applied or outcome.current_rows[()] is not None
        return applied

    applied = sum(await asyncio.gather(*(increment(w) for w in range(CAS_WORKERS))))
    row = await backend.read_row(partition, (), Consistency.SERIAL)
    assert row is not None
    assert applied >= CAS_ATTEMPTS
    assert row["n"] == applied


async def test_static_epoch_fences_clustered_writes(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    claim = Batch(
        partition, static_values={"epoch": 1, "balance": 0}, conditions=(StaticMatches({"epoch": None}),)
    )
    assert (await backend.write(claim)).applied
    assert not (await backend.write(claim)).applied

    def post(epoch: int, seq: int, balance: int) -> Batch:
        return Batch(
            partition,
            puts=(Put((seq,), {"amount": 10, "note": f"epoch-{epoch}"}),),
            static_values={"balance": balance},
            conditions=(StaticMatches({"epoch": epoch}), RowAbsent((seq,))),
        )

    assert (await backend.write(post(epoch=1, seq=1, balance=10))).applied
    takeover = Batch(partition, static_values={"epoch": 2}, conditions=(StaticMatches({"epoch": 1}),))
    assert (await backend.write(takeover)).applied
    fenced = await backend.write(post(epoch=1, seq=2, balance=20))
    assert not fenced.applied
    assert fenced.current_static is not None
    assert dict(fenced.current_static.values) == {"balance": 10, "epoch": 2}
    assert fenced.current_rows == {(2,): None}
    assert (await backend.write(post(epoch=2, seq=3, balance=20))).applied
    rows = await read_all(backend, RowQuery(partition))
    assert [(r["seq"], r["note"], r["balance"], r["epoch"]) for r in rows] == [
        (1, "epoch-1", 20, 2),
        (3, "epoch-2", 20, 2),
    ]


async def test_a_failed_condition_writes_nothing(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(backend, partition, (5,), {"note": "old"})
    await backend.write(Batch(partition, static_values={"epoch": 1, "balance": 0}))
    puts = tuple(Put((seq,), {"note": "new", "amount": seq}) for seq in range(1, 11))
    failing: list[tuple[Condition, ...]] = [
        (RowAbsent((5,)),),
        (RowMatches((5,), {"note": "other"}),),
        (RowMatches((1,), {}),),
        (StaticMatches({"epoch": 2}), RowMatches((5,), {"note": "old"})),
    ]
    for conditions in failing:
        batch = Batch(partition, puts=puts, static_values={"balance": 99}, conditions=conditions)
        outcome = await backend.write(batch)
        assert not outcome.applied
        assert outcome.current_static is not None
        assert dict(outcome.current_static.values) == {"epoch": 1, "balance": 0}
    assert [(r["seq"], r["note"]) for r in await read_all(backend, RowQuery(partition))] == [(5, "old")]
    holding = Batch(
        partition, puts=puts, static_values={"balance": 55}, conditions=(StaticMatches({"epoch": 1}),)
    )
    assert (await backend.write(holding)).applied
    rows = await read_all(backend, RowQuery(partition))
    assert [(r["seq"], r["note"], r["balance"]) for r in rows] == [(seq, "new", 55) for seq in range(1, 11)]


async def test_failed_outcome_shows_the_named_rows(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(backend, partition, (1,), {"note": "one", "flag": False})
    batch = Batch(
        partition,
        puts=(Put((1,), {"note": "uno"}), Put((2,), {"note": "dos"})),
        conditions=(RowMatches((1,), {"flag": True}), RowAbsent((2,))),
    )
    outcome = await backend.write(batch)
    assert not outcome.applied
    assert set(outcome.current_rows) == {(1,), (2,)}
    assert outcome.current_rows[(2,)] is None
    current = outcome.current_rows[(1,)]
    assert current is not None
    assert (current["note"], current["flag"]) == ("one", False)


async def test_conditions_on_null_cells_and_conditional_deletes(backend: StorageBackend, scope: str) -> None:
    partition = LEDGER.partition(scope, "acct")
    await put_row(backend, partition, (1,), {"note": "to remove"})
    null_amount = Batch(
        partition,
        puts=(Put((2,), {"amount": 5}),),
        conditions=(RowMatches((1,), {"amount": None}),),
        deletes=(Delete((1,)),),
    )
    assert (await backend.write(null_amount)).applied
    assert await backend.read_row(partition, (1,), Consistency.SERIAL) is None
    row = await backend.read_row(partition, (2,), Consistency.SERIAL)
    assert row is not None and row["amount"] == 5
    await put_row(backend, partition, (1,), {"amount": 3})
    refused = await backend.write(null_amount)
    current = refused.current_rows[(1,)]
    assert not refused.applied and current is not None and current["amount"] == 3
    await backend.write(Batch(partition, deletes=(Delete((1,)),)))
    missing_reads_as_null = await backend.write(null_amount)
    assert missing_reads_as_null.applied
    exists = Batch(partition, puts=(Put((1,), {"amount": 9}),), conditions=(RowMatches((1,), {}),))
    assert not (await backend.write(exists)).applied


def test_a_conditional_batch_must_write_a_value(scope: str) -> None:
    partition = KV.partition(scope, "k")
    with pytest.raises(InvariantViolation, match="must write a value"):
        Batch(partition, deletes=(Delete(()),), conditions=(RowMatches((), {}),))
    with pytest.raises(InvariantViolation, match="bad value for n"):
        Batch(partition, puts=(Put((), {"n": "not a number"}),))


# More rows than one statement reads on SQLite (`limits.sqlite_statement_rows_max`), and not a power of two.
MANY_ROWS: Final = 77


@pytest.mark.parametrize("table", [LEDGER, EVENTS], ids=["one_clustering_column", "two_clustering_columns"])
async def test_conditions_on_many_rows_see_each_row(
    backend: StorageBackend, scope: str, table: Table
) -> None:
    """A batch conditioned on many rows, half of them there: with one condition wrong nothing is written
    and the outcome names every row as it is; with all of them right, every row is written."""
    partition = table.partition(scope, "many")

    def key(index: int) -> Key:
        return (index,) if table is LEDGER else (index // 3, f"id-{index}")

    column = "note" if table is LEDGER else "body"
    keys = [key(index) for index in range(MANY_ROWS)]
    await backend.write(Batch(partition, puts=tuple(Put(k, {column: f"was-{k}"}) for k in keys[::2])))
    puts = tuple(Put(k, {column: "new"}) for k in keys)

    def conditions(wrong: Key | None) -> tuple[Condition, ...]:
        return tuple(
            (
                RowMatches(k, {column: "not-this" if k == wrong else f"was-{k}"})
                if i % 2 == 0
                else RowAbsent(k)
            )
            for i, k in enumerate(keys)
        )

    refused = await backend.write(Batch(partition, puts=puts, conditions=conditions(keys[40])))
    assert not refused.applied
    current = {k: (row[column] if row is not None else None) for k, row in refused.current_rows.items()}
    assert current == {k: (f"was-{k}" if i % 2 == 0 else None) for i, k in enumerate(keys)}
    assert len(await read_all(backend, RowQuery(partition))) == len(keys[::2])
    assert (await backend.write(Batch(partition, puts=puts, conditions=conditions(None)))).applied
    rows = await read_all(backend, RowQuery(partition))
    assert [row[column] for row in rows] == ["new"] * MANY_ROWS
