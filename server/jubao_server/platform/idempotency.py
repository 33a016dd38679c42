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
ledger's `payments_requests`, so claims written before this mechanism are still recognised until
they expire.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from google.protobuf.message import Message
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, already_exists, invalid
from jubao_server.storage.contract import (
    Batch,
    BatchOutcome,
    ColumnType,
    Put,
    Row,
    RowAbsent,
    StorageBackend,
    StorageError,
    Table,
    Value,
)

REQUEST_LOG = Table(
    name="request_log",
    partition_key=("request_id",),
    columns={
        "request_id": ColumnType.TEXT,
        "method": ColumnType.TEXT,
        "body_sha256": ColumnType.TEXT,
        "response": ColumnType.BLOB,
        "create_time_ms": ColumnType.BIGINT,
    },
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class ClaimTable:
    """Where a product keeps its claims: a table partitioned by (scope, request_id) with `body_sha256`
    and `create_time_ms` columns, the column naming the operation, and the column holding the first
    answer ("" when the product stores none)."""

    table: Table
    operation_column: str
    answer_column: str = ""


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
    def __init__(self, backend: StorageBackend, where: ClaimTable, clock: Clock, ttl_s: int) -> None:
        self._backend = backend
        self._where = where
        self._clock = clock
        self._ttl_s = ttl_s

    async def claim(
        self, scope: str, request_id: str, operation: str, body_sha256: str, **values: Value
    ) -> Claim:
        """Claim `request_id` for this request (`values`: more columns to keep with the claim). A request
        without an id is never a retry."""
        now_ms = self._clock.wall_ms()
        if not request_id:
            return Claim(fresh=True, claimed_ms=now_ms)
        batch = self._claim_batch(scope, request_id, operation, body_sha256, values, now_ms=now_ms)
        claim = self._settle(request_id, operation, body_sha256, now_ms, await self._backend.write(batch))
        if isinstance(claim, ApiError):
            raise claim
        return claim

    async def claim_all(
        self, scope: str, operation: str, requests: Sequence[tuple[str, str, dict[str, Value]]]
    ) -> list[Claim | ApiError]:
        """Claim the request ids of a batch of `operation`s (id, body hash, more columns), as `claim`
        would one by one, in one storage call (`write_each`, per `storage_write_each_batches_max`; one
        write of the group commit on SQLite): each item's claim, or its REQUEST_ID_REUSED. A storage
        error of any claim raises, as `claim` would, once its call has ended: the ids are then claimed or
        not, and a retry of the batch recognises the ones that were. The ids must differ (the caller
        checks)."""
        now_ms = self._clock.wall_ms()
        claims: list[Claim | ApiError] = [Claim(fresh=True, claimed_ms=now_ms)] * len(requests)
        claimed = [index for index, (request_id, _, _) in enumerate(requests) if request_id]
        step = limits.storage_write_each_batches_max
        for start in range(0, len(claimed), step):
            indexes = claimed[start : start + step]
            batches = [
                self._claim_batch(scope, request_id, operation, body, values, now_ms=now_ms)
                for request_id, body, values in (requests[index] for index in indexes)
            ]
            results = await self._backend.write_each(batches)
            for index, result in zip(indexes, results, strict=True):
                if isinstance(result, StorageError):
                    raise result
                request_id, body, _ = requests[index]
                claims[index] = self._settle(request_id, operation, body, now_ms, result)
        return claims

    def _claim_batch(
        self,
        scope: str,
        request_id: str,
        operation: str,
        body_sha256: str,
        values: dict[str, Value],
        *,
        now_ms: int,
    ) -> Batch:
        """The conditional write of a claim: the request's operation and body hash, if the id is free."""
        claimed: dict[str, Value] = {
            self._where.operation_column: operation,
            "body_sha256": body_sha256,
            "create_time_ms": now_ms,
            **values,
        }
        put = Put((), claimed, ttl_s=self._ttl_s)
        partition = self._where.table.partition(scope, request_id)
        return Batch(partition, (put,), conditions=(RowAbsent(()),))

    def _settle(
        self, request_id: str, operation: str, body_sha256: str, now_ms: int, outcome: BatchOutcome
    ) -> Claim | ApiError:
        """What a claim's write tells: claimed now, claimed before by this same request, or reused."""
        if outcome.applied:
            return Claim(fresh=True, claimed_ms=now_ms)
        earlier = outcome.current_rows.get(())
        if earlier is None or not self._same(earlier, operation, body_sha256):
            return already_exists(
                Reason.REQUEST_ID_REUSED, f"request_id {request_id} was used for another request"
            )
        claimed_ms = earlier["create_time_ms"]
        return Claim(False, self._answer(earlier), claimed_ms if isinstance(claimed_ms, int) else 0)

    async def answer(self, scope: str, request_id: str, answer: bytes) -> None:
        """Keep the first answer of a claimed request, for its retries to replay."""
        if request_id and self._where.answer_column:
            put = Put((), {self._where.answer_column: answer}, ttl_s=self._ttl_s)
            await self._backend.write(Batch(self._where.table.partition(scope, request_id), (put,)))

    def _same(self, earlier: Row, operation: str, body_sha256: str) -> bool:
        return earlier[self._where.operation_column] == operation and earlier["body_sha256"] == body_sha256

    def _answer(self, earlier: Row) -> bytes | None:
        answer = earlier[self._where.answer_column] if self._where.answer_column else None
        return answer if isinstance(answer, bytes) else None


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
