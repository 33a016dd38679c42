"""Unknown outcomes: a conditional batch whose answer did not arrive in time (a Cassandra
`WriteTimeout` of type CAS, or a lost reply) may or may not have been applied. Backends never hand that
doubt to the caller: they read the named rows back at SERIAL consistency, which also completes any
Paxos round in flight, and report `applied=True` if every written cell now has the value the batch
wrote (or the row is gone for a `Delete`). When the batch is not visible and its conditions still hold,
it certainly did not apply and is re-sent, at most `limits.cas_unknown_retries_max` times. For the
comparison to be sound, a conditional batch must write at least one value that no other writer would
write (a new version number, a request id, a fencing epoch); `check_batch` checks that a conditional
batch writes something."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence

from jubao_server import limits
from jubao_server.storage.contract.backend import every_result
from jubao_server.storage.contract.batch import Batch, BatchOutcome
from jubao_server.storage.contract.conditions import conditions_hold, failed_outcome, touched_rows
from jubao_server.storage.contract.errors import StorageError
from jubao_server.storage.contract.faults import Faults, LostAnswer
from jubao_server.storage.contract.reads import Consistency, Row
from jubao_server.storage.contract.values import Key

if typing.TYPE_CHECKING:
    from jubao_server.storage.contract.backend import StorageBackend

# Sends batches in one go; each batch's outcome or the StorageError that failed it, in order.
SendEach = Callable[[Sequence[Batch]], Awaitable[list[BatchOutcome | StorageError]]]


class UnknownOutcome(Exception):
    """Raised inside a backend when a conditional write was sent but its answer was lost. It never
    leaves the backend: `resolve_unknown_outcome` turns it into a definite `BatchOutcome`."""


class WriteAttempt(typing.Protocol):
    """One attempt of a conditional batch: its outcome, or UnknownOutcome when its answer was lost."""

    async def __call__(self, batch: Batch, /) -> BatchOutcome: ...


def batch_visible(batch: Batch, rows: Mapping[Key, Row | None], static: Row | None) -> bool:
    """Whether the state read back shows every write of `batch` (the unknown-outcome test)."""
    for put in batch.puts:
        row = rows.get(put.clustering)
        if row is None or any(row.values.get(c) != v for c, v in put.values.items()):
            return False
    if any(rows.get(d.clustering) is not None for d in batch.deletes):
        return False
    if batch.static_values:
        if static is None:
            return False
        return all(static.values.get(c) == v for c, v in batch.static_values.items())
    return True


async def read_touched(backend: StorageBackend, batch: Batch) -> tuple[dict[Key, Row | None], Row | None]:
    """Read, at SERIAL, every row the batch touches and the partition's static columns."""
    keys = touched_rows(batch)
    reads = [backend.read_row(batch.partition, key, Consistency.SERIAL) for key in keys]
    rows = dict(zip(keys, await asyncio.gather(*reads), strict=True))
    static = None
    if batch.partition.table.static_columns:
        static = await backend.read_static(batch.partition, Consistency.SERIAL)
    return rows, static


async def resolve_unknown_outcome(
    backend: StorageBackend, batch: Batch, resend: WriteAttempt
) -> BatchOutcome:
    """Turn a conditional write whose answer was lost into a definite outcome (see the module doc)."""
    for _ in range(limits.cas_unknown_retries_max):
        rows, static = await read_touched(backend, batch)
        if batch_visible(batch, rows, static):
            return BatchOutcome(applied=True, resolved_unknown=True)
        if not conditions_hold(batch, rows, static):
            return failed_outcome(batch, rows, static, resolved_unknown=True)
        try:
            outcome = await resend(batch)
        except UnknownOutcome:
            continue
        return dataclasses.replace(outcome, resolved_unknown=True)
    raise StorageError(f"{batch.partition.table.name}: conditional write outcome still unknown")


async def write_conditional(
    backend: StorageBackend, faults: Faults, batch: Batch, send: WriteAttempt
) -> BatchOutcome:
    """Write a conditional batch with `send` (one attempt), through `faults`, resolving a lost answer."""
    attempt = functools.partial(send_faulty, faults, send=send)
    try:
        return await attempt(batch)
    except UnknownOutcome:
        return await resolve_unknown_outcome(backend, batch, attempt)


async def send_faulty(faults: Faults, batch: Batch, send: WriteAttempt) -> BatchOutcome:
    """One attempt of a conditional batch; a lost answer armed in `faults` raises UnknownOutcome after
    or instead of sending it, exactly as a real timeout would."""
    match faults.lost_answer():
        case LostAnswer.NONE:
            return await send(batch)
        case LostAnswer.APPLIED:
            await send(batch)
    raise UnknownOutcome(f"{batch.partition.table.name}: injected lost answer of a conditional write")


async def write_each_conditional(
    backend: StorageBackend, faults: Faults, batches: Sequence[Batch], send_each: SendEach, send: WriteAttempt
) -> list[BatchOutcome | StorageError]:
    """`StorageBackend.write_each` for a backend that sends the batches in one go (`send_each`), with the
    faults hitting each batch as they would hit its own `write`: a batch failed by `before_operation` is
    not sent; a conditional one whose answer is lost is resolved alone (`send`: one attempt) once the
    others have been written, so it comes out as if written after them."""
    results: list[BatchOutcome | StorageError | None] = [None] * len(batches)
    sending: list[int] = []
    lost: list[int] = []
    for index, batch in enumerate(batches):
        try:
            await faults.before_operation()
        except StorageError as error:
            results[index] = error
            continue
        answer = faults.lost_answer() if batch.conditional else LostAnswer.NONE
        if answer is not LostAnswer.NOT_APPLIED:
            sending.append(index)
        if answer is not LostAnswer.NONE:
            lost.append(index)
    sent = await send_each([batches[index] for index in sending])
    for index, result in zip(sending, sent, strict=True):
        results[index] = result
    attempt = functools.partial(send_faulty, faults, send=send)
    for index in lost:
        # A batch sent whose sending failed keeps its error, as `write_conditional` would raise it.
        if isinstance(results[index], StorageError):
            continue
        try:
            results[index] = await resolve_unknown_outcome(backend, batches[index], attempt)
        except StorageError as error:
            results[index] = error
    return every_result(results)
