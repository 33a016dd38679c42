"""Request claims in batches (`platform/idempotency.py`) on every backend: a bucketed claim table (the
ledger's `payments_claims`) claims a batch's ids with one conditional batch per bucket, settles the ids
claimed before from the failed batch's outcome and claims the rest in the next round; claims racing on the
same ids have one winner each; claims kept in the earlier table are found there while they may live."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import pytest
from jubao.errors import Reason
from jubao_server.clock import SYSTEM_CLOCK, Clock
from jubao_server.errors import ApiError
from jubao_server.payments.ledger import EARLIER_CLAIMS, PAYMENTS_CLAIMS
from jubao_server.platform.idempotency import ATTEMPT_BITS, Claim, EarlierClaims, RequestClaims, new_attempt
from jubao_server.storage.contract import Batch, BatchOutcome, Put, StorageBackend, StorageError, Value

from tests.sim.faults import FaultPlan
from tests.sim.virtual_time import SimClock

BUCKETS = 3
TTL_S = 3600

Requests = list[tuple[str, str, dict[str, Value]]]


class Counting:
    """Counts the batches each `write_each` of a backend takes."""

    def __init__(self, backend: StorageBackend) -> None:
        self.calls: list[int] = []
        self._write_each = backend.write_each
        backend.write_each = self._count  # type: ignore[method-assign]

    async def _count(self, batches: Sequence[Batch]) -> list[BatchOutcome | StorageError]:
        self.calls.append(len(batches))
        return await self._write_each(batches)


def claims_of(
    backend: StorageBackend, earlier_until_ms: int = 0, clock: Clock = SYSTEM_CLOCK
) -> RequestClaims:
    async def buckets(scope: str) -> int:
        return BUCKETS

    async def until_ms(scope: str) -> int:
        return earlier_until_ms

    earlier = EarlierClaims(EARLIER_CLAIMS, until_ms)
    return RequestClaims(backend, PAYMENTS_CLAIMS, clock, TTL_S, buckets=buckets, earlier=earlier)


def requests_of(prefix: str, count: int, body: str = "body") -> Requests:
    return [(f"{prefix}-{index}", f"{body}-{index}", {"target_id": f"tr-{index}"}) for index in range(count)]


def fresh(claim: Claim | ApiError) -> bool:
    return isinstance(claim, Claim) and claim.fresh


def reused(claim: Claim | ApiError) -> bool:
    return isinstance(claim, ApiError) and claim.reason is Reason.REQUEST_ID_REUSED


async def test_a_batch_claims_one_conditional_batch_per_bucket(backend: StorageBackend, scope: str) -> None:
    claims = claims_of(backend)
    counting = Counting(backend)
    first = await claims.claim_all(scope, "transfer", requests_of("id", 60))
    assert all(fresh(claim) for claim in first)
    assert counting.calls == [BUCKETS], "one conditional batch per bucket, in one call"


async def test_ids_claimed_before_are_settled_and_the_rest_claimed_in_the_next_round(
    backend: StorageBackend, scope: str
) -> None:
    """A batch of 40 ids of which 10 were claimed by the same requests and 5 by others: the retries get
    their first claim's time, the reuses REQUEST_ID_REUSED, the 25 others are claimed; every bucket's
    first batch failed on its earlier ids, so the second round claims the rest."""
    claims = claims_of(backend)
    batch = requests_of("id", 40)
    before = await claims.claim_all(scope, "transfer", batch[:10])
    await claims.claim_all(scope, "transfer", [(i, "another body", v) for i, _, v in batch[10:15]])
    counting = Counting(backend)
    outcome = await claims.claim_all(scope, "transfer", batch)
    claimed_ms = [claim.claimed_ms for claim in before if isinstance(claim, Claim)]
    assert outcome[:10] == [Claim(fresh=False, claimed_ms=ms) for ms in claimed_ms]
    assert all(reused(claim) for claim in outcome[10:15])
    assert all(fresh(claim) for claim in outcome[15:])
    assert counting.calls == [BUCKETS, BUCKETS], "a round of failed buckets, then one of the rest"
    again = await claims.claim_all(scope, "transfer", batch[15:])
    assert not any(fresh(claim) for claim in again), "what the second round claimed is kept"


async def test_one_id_claimed_alone_is_the_same_claim(backend: StorageBackend, scope: str) -> None:
    claims = claims_of(backend)
    (batch_claim,) = await claims.claim_all(scope, "transfer", requests_of("one", 1))
    assert fresh(batch_claim)
    retry = await claims.claim(scope, "one-0", "transfer", "body-0", target_id="tr-0")
    assert not retry.fresh
    with pytest.raises(ApiError) as refused:
        await claims.claim(scope, "one-0", "hold", "body-0", target_id="tr-0")
    assert refused.value.reason is Reason.REQUEST_ID_REUSED, "another operation under the same id"


async def test_claims_racing_on_the_same_ids_have_one_winner_each(
    backend: StorageBackend, scope: str
) -> None:
    """Four batches at once over overlapping ids (each id in two of them): each id is claimed fresh by
    exactly one; the other gets it as claimed before."""
    claims = claims_of(backend)
    ids = requests_of("race", 48)
    batches = [ids[0:24], ids[12:36], ids[24:48], ids[36:48] + ids[0:12]]
    outcomes = await asyncio.gather(*(claims.claim_all(scope, "transfer", batch) for batch in batches))
    winners: dict[str, int] = {}
    for batch, outcome in zip(batches, outcomes, strict=True):
        for (request_id, _, _), claim in zip(batch, outcome, strict=True):
            assert isinstance(claim, Claim), claim
            winners[request_id] = winners.get(request_id, 0) + claim.fresh
    assert winners == {request_id: 1 for request_id, _, _ in ids}


async def test_two_attempts_in_one_millisecond_have_one_winner_when_an_answer_is_lost(
    backend: StorageBackend, scope: str, faults: FaultPlan
) -> None:
    """A request's first attempt sends its claim, which is lost with its answer; before that attempt reads
    its row back, a second attempt of the same request claims the id, in the same millisecond. Their rows
    differ only in the attempt number, so the first finds the second's claim, not its own: it is told
    claimed before, and exactly one attempt runs the request."""
    claims = claims_of(backend, clock=SimClock(SYSTEM_CLOCK.wall_ms()))  # stopped: one millisecond
    request = requests_of("twice", 1)
    second: list[Claim | ApiError] = []
    started: list[bool] = []
    before_operation = faults.before_operation

    async def second_attempt_before_the_read_back() -> None:
        if faults.conditional_timeouts == 0 and not started:
            started.append(True)
            second.extend(await claims.claim_all(scope, "transfer", request))
        await before_operation()

    faults.before_operation = second_attempt_before_the_read_back  # type: ignore[method-assign]
    faults.conditional_timeouts, faults.applied_before_timeout = 1, False
    (first,) = await claims.claim_all(scope, "transfer", request)
    assert len(second) == 1, "the second attempt ran between the lost answer and the read-back"
    assert (fresh(first), fresh(second[0])) == (False, True)


async def test_claims_kept_in_the_earlier_table_are_found_while_they_may_live(
    backend: StorageBackend, scope: str
) -> None:
    """An id claimed in `payments_requests` (as versions before `payments_claims` kept it) answers its
    retry and refuses its reuse, and is not claimed again in the new table; once the earlier claims may
    have expired, they are not looked for."""
    kept_ms = SYSTEM_CLOCK.wall_ms() - 60_000
    for request_id, body in (("old-same", "body-same"), ("old-other", "body-old")):
        values: dict[str, Value] = {"operation": "transfer", "body_sha256": body, "create_time_ms": kept_ms}
        put = Put((), values, ttl_s=TTL_S)
        await backend.write(Batch(EARLIER_CLAIMS.table.partition(scope, request_id), (put,)))
    batch: Requests = [("old-same", "body-same", {}), ("old-other", "body-new", {}), ("new", "body", {})]
    within = claims_of(backend, earlier_until_ms=SYSTEM_CLOCK.wall_ms() + 60_000)
    same, other, new = await within.claim_all(scope, "transfer", batch)
    assert same == Claim(fresh=False, claimed_ms=kept_ms)
    assert reused(other)
    assert fresh(new)
    assert (await within.claim_all(scope, "transfer", batch[:1])) == [same], "found there again"
    for request_id in ("old-same", "old-other"):
        partition, key = PAYMENTS_CLAIMS.place(scope, request_id, BUCKETS)
        assert await backend.read_row(partition, key) is None, "an id found there is not claimed again"
    past = claims_of(backend, earlier_until_ms=SYSTEM_CLOCK.wall_ms() - 1)
    assert fresh((await past.claim_all(scope, "transfer", batch[:1]))[0]), "not looked for once expired"


def test_a_forked_process_draws_attempt_numbers_of_its_own() -> None:
    """Attempt numbers come from a generator seeded once per process: a forked child starts with the
    parent's memory, so without a new seed it would draw the numbers the parent draws next, and two
    attempts of one request in the two processes could carry the same number."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.write(write_fd, str(new_attempt()).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        child = int(pipe.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = new_attempt()
    assert child != parent
    assert 0 <= child < 2**ATTEMPT_BITS and 0 <= parent < 2**ATTEMPT_BITS
