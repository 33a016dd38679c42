"""The error vocabulary shared by the server and every client.

Every error the service returns is a `google.rpc.Status` whose details carry a `google.rpc.ErrorInfo`
with `domain == ERROR_DOMAIN` and a `reason` from `Reason`; invalid fields add a `google.rpc.BadRequest`,
throttling adds a `google.rpc.RetryInfo`. `error_from_rpc` turns a failed call into the typed exception
of its status code.

A status always fits gRPC's metadata limits (well under 8 KiB with its message): a `BadRequest` lists at
most the first 10 bad fields (the message says how many more there were), and request values repeated in
an error are cut to a few dozen characters, ending in "...".
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Final

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN: Final = "jubao.cloud"


class Reason(StrEnum):
    """Why a call failed: stable, UPPER_SNAKE, safe to branch on."""

    # UNAUTHENTICATED
    API_KEY_MISSING = "API_KEY_MISSING"
    API_KEY_INVALID = "API_KEY_INVALID"
    API_KEY_REVOKED = "API_KEY_REVOKED"
    CLIENT_CERTIFICATE_UNKNOWN = "CLIENT_CERTIFICATE_UNKNOWN"
    TENANT_DISABLED = "TENANT_DISABLED"
    # PERMISSION_DENIED
    PRODUCT_NOT_ENABLED = "PRODUCT_NOT_ENABLED"
    OPERATOR_ONLY = "OPERATOR_ONLY"
    # RESOURCE_EXHAUSTED
    RATE_LIMITED = "RATE_LIMITED"
    CONCURRENCY_LIMITED = "CONCURRENCY_LIMITED"
    API_KEY_LIMIT = "API_KEY_LIMIT"
    TENANT_LIMIT = "TENANT_LIMIT"
    # INVALID_ARGUMENT
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    # The page_token was not issued by this service for this same query (method, tenant and every
    # parameter but page_size), or was altered: start the listing again without a token.
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    # The request body is not a valid protobuf message of the method's request type.
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # NOT_FOUND
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    API_KEY_NOT_FOUND = "API_KEY_NOT_FOUND"
    # ALREADY_EXISTS
    TENANT_EXISTS = "TENANT_EXISTS"
    REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    # NOT_FOUND, ALREADY_EXISTS (payments)
    ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
    TRANSFER_NOT_FOUND = "TRANSFER_NOT_FOUND"
    ACCOUNT_EXISTS = "ACCOUNT_EXISTS"
    # FAILED_PRECONDITION
    CONCURRENT_MODIFICATION = "CONCURRENT_MODIFICATION"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    # A posting would take an account's ledger, held or available balance outside int64.
    BALANCE_OVERFLOW = "BALANCE_OVERFLOW"
    # DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    DRAINING = "DRAINING"
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    # NOT_FOUND (payments holds and escrows)
    HOLD_NOT_FOUND = "HOLD_NOT_FOUND"
    ESCROW_NOT_FOUND = "ESCROW_NOT_FOUND"
    # FAILED_PRECONDITION (payments holds, escrows and refunds)
    INVALID_STATE = "INVALID_STATE"
    REFUND_EXCEEDS_ORIGINAL = "REFUND_EXCEEDS_ORIGINAL"
    AMOUNT_EXCEEDS_HOLD = "AMOUNT_EXCEEDS_HOLD"
    REFUND_WINDOW_CLOSED = "REFUND_WINDOW_CLOSED"
    # UNAVAILABLE (payments): committed, but a credit to another shard is still on its way; retry
    DELIVERY_PENDING = "DELIVERY_PENDING"
    # UNAVAILABLE (payments): the ledger shard is held by another server that could not be reached; retry
    SHARD_MOVED = "SHARD_MOVED"
    # FAILED_PRECONDITION (payments events): the cursor is older than the events kept; start afresh
    CURSOR_EXPIRED = "CURSOR_EXPIRED"


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class JubaoError(Exception):
    """A failed call. Subclasses name the gRPC status code; `reason` says why."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay_ms: int | None = None,
    ) -> None:
        super().__init__(
            f"{self.code.name} {reason}: {message}" if reason else f"{self.code.name}: {message}"
        )
        self.message = message
        self.reason = reason
        self.domain = domain
        self.metadata = metadata or {}
        self.field_violations = field_violations
        self.retry_delay_ms = retry_delay_ms


class Cancelled(JubaoError):
    code = grpc.StatusCode.CANCELLED


class InvalidArgument(JubaoError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(JubaoError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(JubaoError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(JubaoError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(JubaoError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(JubaoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(JubaoError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(JubaoError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(JubaoError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(JubaoError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(JubaoError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(JubaoError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(JubaoError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(JubaoError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Final[dict[grpc.StatusCode, type[JubaoError]]] = {
    cls.code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_class(code: grpc.StatusCode) -> type[JubaoError]:
    return _BY_CODE.get(code, JubaoError)


def error_from_status(code: grpc.StatusCode, status: status_pb2.Status | None, message: str) -> JubaoError:
    """Build the typed exception of `code` from a decoded `google.rpc.Status` (None when absent)."""
    info = error_details_pb2.ErrorInfo()
    bad_request = error_details_pb2.BadRequest()
    retry = error_details_pb2.RetryInfo()
    has_info = has_retry = False
    for detail in status.details if status is not None else ():
        if detail.Is(info.DESCRIPTOR):
            has_info = detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
        elif detail.Is(retry.DESCRIPTOR):
            has_retry = detail.Unpack(retry)
    violations = tuple(FieldViolation(v.field, v.description) for v in bad_request.field_violations)
    delay_ms = retry.retry_delay.ToMilliseconds() if has_retry else None
    return error_class(code)(
        status.message if status is not None and status.message else message,
        reason=info.reason if has_info else "",
        domain=info.domain if has_info else "",
        metadata=dict(info.metadata) if has_info else {},
        field_violations=violations,
        retry_delay_ms=delay_ms,
    )


def error_from_rpc(error: grpc.RpcError) -> JubaoError:
    """The typed exception for a failed call (a `grpc.Call`, sync or aio)."""
    call: grpc.Call = error  # type: ignore[assignment]
    status = rpc_status.from_call(call)
    return error_from_status(call.code(), status, call.details() or "")
