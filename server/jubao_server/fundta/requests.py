"""AIP-155 for the fund TA: every mutation claims its request id first (`platform.idempotency`, the table
`fundta_requests`), then runs, then keeps its first answer with the claim: the response, or the refusal
(an `ApiError` that depends on what was stored or on the time, so a retry after the world changed is
refused the same way). Errors worth retrying (UNAVAILABLE, ABORTED, ...) are not kept: the retry runs
again, and every mutation recognises what an earlier attempt of its request did (`Claim.fresh`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from jubao.reasons import FieldViolation, Reason

from jubao_server.clock import Clock
from jubao_server.errors import ApiError, ErrorCode
from jubao_server.fundta.tables import CLAIMS
from jubao_server.platform.idempotency import Claim, RequestClaims, body_sha256, check_request_id
from jubao_server.storage.contract import StorageBackend

R = TypeVar("R", bound=Message)

_RESPONSE: Final = b"R"
_REFUSAL: Final = b"E"
# Refusals a retry must get again; the others say "try again".
_KEPT: Final = frozenset(
    {
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.NOT_FOUND,
        ErrorCode.ALREADY_EXISTS,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.FAILED_PRECONDITION,
    }
)


class Requests:
    def __init__(self, backend: StorageBackend, clock: Clock, ttl_s: int) -> None:
        self._claims = RequestClaims(backend, CLAIMS, clock, ttl_s)

    async def run(
        self,
        scope: str,
        operation: str,
        request: Message,
        response_type: type[R],
        apply: Callable[[Claim], Awaitable[R]],
    ) -> R:
        """Run `apply` once per request id of `scope` and answer its retries as it answered."""
        request_id: str = getattr(request, "request_id")  # noqa: B009
        check_request_id(request_id)
        claim = await self._claims.claim(scope, request_id, operation, body_sha256(request))
        if claim.answer is not None:
            return _replay(claim.answer, response_type)
        try:
            response = await apply(claim)
        except ApiError as error:
            if error.code in _KEPT:
                await self._claims.answer(scope, request_id, _REFUSAL + error.to_status().SerializeToString())
            raise
        await self._claims.answer(scope, request_id, _RESPONSE + response.SerializeToString())
        return response

    async def claim_only(self, scope: str, operation: str, request: Message) -> Claim:
        """Claim a request whose retries are answered afresh (the same operation as it is now): the same
        id with another body is still REQUEST_ID_REUSED."""
        request_id: str = getattr(request, "request_id")  # noqa: B009
        check_request_id(request_id)
        return await self._claims.claim(scope, request_id, operation, body_sha256(request))


def _replay(answer: bytes, response_type: type[R]) -> R:
    if answer.startswith(_REFUSAL):
        raise _error_of(status_pb2.Status.FromString(answer[len(_REFUSAL) :]))
    return response_type.FromString(answer[len(_RESPONSE) :])


def _error_of(status: status_pb2.Status) -> ApiError:
    """The refusal a kept status was made from."""
    info = error_details_pb2.ErrorInfo()
    bad = error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
    violations = tuple(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return ApiError(
        ErrorCode(status.code),
        Reason(info.reason),
        status.message,
        field_violations=violations,
        metadata=dict(info.metadata),
    )
