"""AIP-155 request ids, one mechanism for every product (`RequestClaims`).

A mutation's request id is **claimed first**, before the mutation runs: a conditional write (IF NOT
EXISTS) of the request's operation and the SHA-256 of its body without the request id, kept
`ttl_s`. The same id with another operation or body is ALREADY_EXISTS (`REQUEST_ID_REUSED`). A claim
that finds an earlier claim of the same request says so (`Claim.fresh` is False) and hands back the
first answer when the product stored one (`answer`), so the retry replays it; a product whose answers
are found by ids derived from the request id (payments) stores none. A retry whose claim holds no
answer yet (the first attempt crashed, or still runs) runs the mutation again, which must then be
idempotent for that request (TenantAdmin: `tenancy/service.py`; payments: ARCHITECTURE.md).

Each product keeps its claims in its own table (`ClaimTable`): TenantAdmin's `request_log`, the
ledger's `payments_claims`, so claims written before this mechanism are still recognised until
they expire.

**Claims are made in batches.** `claim_all` claims a batch's ids in one storage call (`write_each`),
with the claims of one partition as one conditional batch. A table of one partition per request id gets
one batch per id. A bucketed table (the ledger's) spreads a scope's claims over a few partitions by the
id's hash, so a batch of a thousand ids is a few dozen conditional batches, one Paxos round each on
Cassandra. A bucket's batch fails whole when one of its ids was claimed before: the outcome names the
rows there, which settle those ids, and the rest go again in the next round (`limits.claim_rounds_max`).

**Each call's claims carry its own attempt number** (`attempt`, 63 random bits). Two attempts of one
request in the same millisecond would otherwise write identical rows, and a claim whose answer was lost
is resolved by reading its row back (`storage/contract/unknown.py`): the attempt whose write did not land
would take the other's row for its own and be told fresh too, and run the mutation a second time. With
the attempt number, it sees another attempt's claim and settles as a retry.

**Claims can ride the commit they guard** (`guarding`, `guards`): where the backend writes guards
(SQLite, whose one database makes the claims and the requests' changes one transaction), the claims' rows
are stored by the write that commits the requests, under the same conditions; a guard that fails means
what a claim that is not fresh means, and `claim_all` then tells each retry from a reuse.

**Claims kept before a table moved** (`EarlierClaims`): while claims of the product's earlier table may
live, an id is looked for there first, and one found there is settled by it (a retry, or a reuse) and
not claimed again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import random
import re
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, already_exists, invalid
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    ColumnType,
    Key,
    PartitionRef,
    Put,
    Row,
    RowAbsent,
    StorageBackend,
    StorageError,
    Table,
    Value,
)

# The column of a claim's attempt number, one per `claim_all` call (see the module).
ATTEMPT = "attempt"
ATTEMPT_BITS = 63
# Attempt numbers come from a generator seeded from the OS once per process, and again in a forked child
# (so that two processes never share a sequence). Unlike `secrets`, a number costs no system call,
# which on the event loop also let go of the GIL once per claim call. They need only differ between
# attempts; nothing is kept secret by them.
_ATTEMPTS = random.Random()
os.register_at_fork(after_in_child=_ATTEMPTS.seed)


def new_attempt() -> int:
    """A claim call's attempt number: 63 random bits."""
    return _ATTEMPTS.getrandbits(ATTEMPT_BITS)


REQUEST_LOG = Table(
    name="request_log",
    partition_key=("request_id",),
    columns={
        "request_id": ColumnType.TEXT,
        "method": ColumnType.TEXT,
        "body_sha256": ColumnType.TEXT,
        "response": ColumnType.BLOB,
        "create_time_ms": ColumnType.BIGINT,
        ATTEMPT: ColumnType.BIGINT,
    },
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class ClaimTable:
    """Where a product keeps its claims: a table with `body_sha256`, `create_time_ms` and `attempt`
    columns, the column naming the operation, and the column holding the first answer ("" when the
    product stores none). The table is partitioned by (scope, request_id), or, `bucketed`, by (scope,
    bucket) and clustered by request_id. A table of claims as versions before `attempt` wrote them (only
    read now: `EarlierClaims`) has `attempts` False."""

    table: Table
    operation_column: str
    answer_column: str = ""
    bucketed: bool = False
    attempts: bool = True

    def __post_init__(self) -> None:
        table = self.table
        shape = (("bucket",), ("request_id",)) if self.bucketed else (("request_id",), ())
        ensure((table.partition_key, table.clustering_key) == shape, f"{table.name}: not a claim table")
        ensure(not self.attempts or ATTEMPT in table.columns, f"{table.name}: claims keep their attempt")

    def place(self, scope: str, request_id: str, buckets: int) -> tuple[PartitionRef, Key]:
        """The partition and row of a request id's claim (`buckets`: the scope's, when bucketed)."""
        if self.bucketed:
            bucket = zlib.crc32(request_id.encode()) % buckets
            return self.table.partition(scope, bucket), (request_id,)
        return self.table.partition(scope, request_id), ()


# A scope's bucket count in a bucketed claim table.
Buckets = Callable[[str], Awaitable[int]]
# A request to claim: its id, the SHA-256 of its body, and more columns to keep with the claim.
ClaimRequest = tuple[str, str, dict[str, Value]]


@dataclasses.dataclass(frozen=True)
class EarlierClaims:
    """Where a product kept its claims before `RequestClaims`' table (one partition per request id), and
    until when (epoch ms, per scope; 0: never) claims kept there may still live."""

    where: ClaimTable
    until_ms: Callable[[str], Awaitable[int]]


PLATFORM_CLAIMS = ClaimTable(REQUEST_LOG, operation_column="method", answer_column="response")


@dataclasses.dataclass(frozen=True)
class Claim:
    # Whether this call claimed the request id (False: an earlier attempt of the same request did).
    fresh: bool
    # The first attempt's answer, when it was stored.
    answer: bytes | None = None
    # When the first attempt claimed it (epoch ms; this call's time when fresh).
    claimed_ms: int = 0


def check_request_id(request_id: str) -> None:
    if request_id and not _REQUEST_ID.match(request_id):
        raise invalid("request_id", f"1 to {limits.request_id_length_max} characters of [A-Za-z0-9._:-]")


def body_sha256(request: Message) -> str:
    """Hash of the request without its request_id, stable across processes."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("request_id")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


class RequestClaims:
    def __init__(
        self,
        backend: StorageBackend,
        where: ClaimTable,
        clock: Clock,
        ttl_s: int,
        *,
        buckets: Buckets | None = None,
        earlier: EarlierClaims | None = None,
    ) -> None:
        ensure(where.bucketed == (buckets is not None), f"{where.table.name}: buckets iff bucketed")
        ensure(earlier is None or not earlier.where.bucketed, "earlier claims are one partition per id")
        self._backend = backend
        self._where = where
        self._clock = clock
        self._ttl_s = ttl_s
        self._buckets = buckets
        self._earlier = earlier

    async def claim(
        self, scope: str, request_id: str, operation: str, body_sha256: str, **values: Value
    ) -> Claim:
        """Claim `request_id` for this request (`values`: more columns to keep with the claim). A request
        without an id is never a retry."""
        (claim,) = await self.claim_all(scope, operation, [(request_id, body_sha256, values)])
        if isinstance(claim, ApiError):
            raise claim
        return claim

    async def claim_all(
        self, scope: str, operation: str, requests: Sequence[ClaimRequest]
    ) -> list[Claim | ApiError]:
        """Claim the request ids of a batch of `operation`s (id, body hash, more columns), as `claim`
        would one by one, in one storage call per round (see the module): each item's claim, or its
        REQUEST_ID_REUSED. A storage error of any claim raises, as `claim` would, once its call has
        ended, and so do ids still contended after the last round: the ids are then claimed or not, and
        a retry of the batch recognises the ones that were. The ids must differ (the caller checks)."""
        now_ms = self._clock.wall_ms()
        claims: list[Claim | ApiError] = [Claim(fresh=True, claimed_ms=now_ms)] * len(requests)
        call = _ClaimCall(scope, operation, requests, claims, now_ms, new_attempt())
        pending = [index for index, (request_id, _, _) in enumerate(requests) if request_id]
        if pending and self._earlier is not None and now_ms < await self._earlier.until_ms(scope):
            pending = await self._claimed_earlier(call, self._earlier.where, pending)
        buckets = await self._bucket_count(scope) if pending else 0
        for _ in range(limits.claim_rounds_max):
            if not pending:
                return call.claims
            pending = await self._claim_round(call, pending, buckets)
        if pending:
            raise StorageError(f"{len(pending)} request ids of {scope} stayed contended; retry the request")
        return call.claims

    async def guarding(self, scope: str) -> bool:
        """Whether claims of `scope` may ride the writes that commit their requests (`guards`): where the
        backend writes guards (SQLite, whose one database makes a claim and its request's change one
        transaction: one write instead of two) and no earlier table may hold an id."""
        if not self._backend.guarded_writes:
            return False
        return self._earlier is None or self._clock.wall_ms() >= await self._earlier.until_ms(scope)

    async def guards(self, scope: str, operation: str, requests: Sequence[ClaimRequest]) -> list[Batch]:
        """The claims of `requests` (id, body hash, more columns; ids that differ) as guards to store with
        the write that commits them (`StorageBackend.write_after`), where `guarding` says so: the rows
        `claim_all` writes, under the same conditions, one batch per partition. A guard that fails means
        what a claim that is not fresh means: `claim_all` then tells each retry from a reuse."""
        ensure(all(request_id for request_id, _, _ in requests), "a guard claims a request id")
        call = _ClaimCall(scope, operation, requests, [], self._clock.wall_ms(), new_attempt())
        batches, _ = self._claim_batches(call, range(len(requests)), await self._bucket_count(scope))
        return batches

    async def _bucket_count(self, scope: str) -> int:
        return await self._buckets(scope) if self._buckets is not None else 0

    async def _claim_round(self, call: _ClaimCall, pending: list[int], buckets: int) -> list[int]:
        """Claim the `pending` items, a conditional batch per partition (of at most
        `claim_batch_rows_max`): settle those a batch's outcome settles; the items left for the next
        round (of a batch that failed on other items)."""
        batches, members = self._claim_batches(call, pending, buckets)
        results: list[BatchOutcome | StorageError] = []
        write_step = limits.storage_write_each_batches_max
        for start in range(0, len(batches), write_step):
            results += await self._backend.write_each(batches[start : start + write_step])
        left: list[int] = []
        for chunk, result in zip(members, results, strict=True):
            if isinstance(result, StorageError):
                raise result
            for index, key in chunk:
                if result.applied:
                    call.claims[index] = Claim(fresh=True, claimed_ms=call.now_ms)
                elif (earlier := result.current_rows.get(key)) is None:
                    left.append(index)
                else:
                    call.settle(self._where, index, earlier)
        return left

    def _claim_batches(
        self, call: _ClaimCall, pending: Sequence[int], buckets: int
    ) -> tuple[list[Batch], list[list[tuple[int, Key]]]]:
        """The conditional batches claiming the `pending` items, one per partition (of at most
        `claim_batch_rows_max`), and each batch's items with their rows."""
        by_partition: dict[Key, tuple[PartitionRef, list[tuple[int, Key]]]] = {}
        for index in pending:
            partition, key = self._where.place(call.scope, call.requests[index][0], buckets)
            by_partition.setdefault(partition.key, (partition, []))[1].append((index, key))
        batches: list[Batch] = []
        members: list[list[tuple[int, Key]]] = []
        step = limits.claim_batch_rows_max
        for partition, places in by_partition.values():
            for start in range(0, len(places), step):
                chunk = places[start : start + step]
                puts = tuple(self._claim_put(call, key, call.requests[index]) for index, key in chunk)
                conditions = tuple(RowAbsent(key) for _, key in chunk)
                batches.append(Batch(partition, puts, conditions=conditions))
                members.append(chunk)
        return batches, members

    def _claim_put(self, call: _ClaimCall, key: Key, request: ClaimRequest) -> Put:
        """A claim's row: the request's operation and body hash (and its more columns)."""
        _, body_sha256, values = request
        claimed: dict[str, Value] = {
            self._where.operation_column: call.operation,
            "body_sha256": body_sha256,
            "create_time_ms": call.now_ms,
            **values,
        }
        if self._where.attempts:
            claimed[ATTEMPT] = call.attempt
        return Put(key, claimed, ttl_s=self._ttl_s)

    async def _claimed_earlier(self, call: _ClaimCall, where: ClaimTable, pending: list[int]) -> list[int]:
        """Settle the `pending` items whose ids were claimed in the earlier table; the others."""
        rows: list[Row | None] = []
        step = limits.claim_earlier_reads_max
        for start in range(0, len(pending), step):
            reads = (
                self._backend.read_row(where.place(call.scope, call.requests[index][0], 0)[0])
                for index in pending[start : start + step]
            )
            rows += await asyncio.gather(*reads)
        left: list[int] = []
        for index, row in zip(pending, rows, strict=True):
            if row is None:
                left.append(index)
            else:
                call.settle(where, index, row)
        return left

    async def answer(self, scope: str, request_id: str, answer: bytes) -> None:
        """Keep the first answer of a claimed request, for its retries to replay."""
        if request_id and self._where.answer_column:
            partition, key = self._where.place(scope, request_id, await self._bucket_count(scope))
            put = Put(key, {self._where.answer_column: answer}, ttl_s=self._ttl_s)
            await self._backend.write(Batch(partition, (put,)))


@dataclasses.dataclass(frozen=True)
class _ClaimCall:
    """One `claim_all`: its requests (id, body hash, more columns), their claims as they settle, and the
    attempt number its claims carry."""

    scope: str
    operation: str
    requests: Sequence[ClaimRequest]
    claims: list[Claim | ApiError]
    now_ms: int
    attempt: int

    def settle(self, where: ClaimTable, index: int, earlier: Row) -> None:
        """What an earlier claim of an item's id tells: claimed before by this same request, or reused."""
        request_id, body_sha256, _ = self.requests[index]
        if earlier[where.operation_column] != self.operation or earlier["body_sha256"] != body_sha256:
            self.claims[index] = already_exists(
                Reason.REQUEST_ID_REUSED, f"request_id {request_id} was used for another request"
            )
            return
        answer = earlier[where.answer_column] if where.answer_column else None
        claimed_ms = earlier["create_time_ms"]
        self.claims[index] = Claim(
            False,
            answer if isinstance(answer, bytes) else None,
            claimed_ms if isinstance(claimed_ms, int) else 0,
        )


R = TypeVar("R", bound=Message)


class RequestLog:
    """Request claims for protobuf services that keep their first response with the claim and replay it
    to the retries: the platform's own (TenantAdmin, in `request_log`) and a product's (`where`)."""

    def __init__(self, backend: StorageBackend, clock: Clock, where: ClaimTable = PLATFORM_CLAIMS) -> None:
        self.claims = RequestClaims(backend, where, clock, limits.request_log_ttl_s)

    async def run(
        self,
        scope: str,
        method: str,
        request: Message,
        response_type: type[R],
        apply: Callable[[Claim], Awaitable[R]],
        *,
        redact: Callable[[R], R] = lambda response: response,
    ) -> R:
        """Apply a mutation once per request id: claimed first, then applied (`apply` learns whether an
        earlier attempt claimed it, so that it can recognise what that attempt did), then its response
        kept; `redact` strips what must not be kept (secrets)."""
        request_id: str = getattr(request, "request_id")  # noqa: B009
        check_request_id(request_id)
        claim = await self.claims.claim(scope, request_id, method, body_sha256(request))
        if claim.answer is not None:
            return response_type.FromString(claim.answer)
        response = await apply(claim)
        await self.claims.answer(scope, request_id, redact(response).SerializeToString())
        return response
