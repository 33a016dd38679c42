"""The error vocabulary shared by the server and every client.

Every error the service returns is a `google.rpc.Status` whose details carry a `google.rpc.ErrorInfo`
with `domain == ERROR_DOMAIN` and a `reason` from `Reason`; invalid fields add a `google.rpc.BadRequest`,
throttling adds a `google.rpc.RetryInfo`. `error_from_rpc` turns a failed gRPC call into the typed
exception of its status code, `jubao.bulk` does the same for Arrow Flight errors (whose `extra_info` carries
the same status). This module loads no transport (gRPC is imported by `error_from_rpc` when it runs), so a
process that uses Arrow Flight can use it too (the two must not share a process: apache/arrow#13300).

A status always fits gRPC's metadata limits (well under 8 KiB with its message): a `BadRequest` lists at
most the first 10 bad fields (the message says how many more there were), and request values repeated in
an error are cut to a few dozen characters, ending in "...".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from google.rpc import error_details_pb2, status_pb2

from jubao.reasons import ERROR_DOMAIN, Code, FieldViolation, Reason

if TYPE_CHECKING:
    import grpc

# The transport-free vocabulary (jubao.reasons) is re-exported: clients keep importing it from here.
__all__ = [
    "ERROR_DOMAIN",
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "Code",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "JubaoError",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "Reason",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "error_class",
    "error_from_rpc",
    "error_from_status",
]


class JubaoError(Exception):
    """A failed call. Subclasses name the status code (`google.rpc.Code`, as gRPC's); `reason` says why."""

    code: Code = Code.UNKNOWN

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
    code = Code.CANCELLED


class InvalidArgument(JubaoError):
    code = Code.INVALID_ARGUMENT


class DeadlineExceeded(JubaoError):
    code = Code.DEADLINE_EXCEEDED


class NotFound(JubaoError):
    code = Code.NOT_FOUND


class AlreadyExists(JubaoError):
    code = Code.ALREADY_EXISTS


class PermissionDenied(JubaoError):
    code = Code.PERMISSION_DENIED


class ResourceExhausted(JubaoError):
    code = Code.RESOURCE_EXHAUSTED


class FailedPrecondition(JubaoError):
    code = Code.FAILED_PRECONDITION


class Aborted(JubaoError):
    code = Code.ABORTED


class OutOfRange(JubaoError):
    code = Code.OUT_OF_RANGE


class Unimplemented(JubaoError):
    code = Code.UNIMPLEMENTED


class Internal(JubaoError):
    code = Code.INTERNAL


class Unavailable(JubaoError):
    code = Code.UNAVAILABLE


class DataLoss(JubaoError):
    code = Code.DATA_LOSS


class Unauthenticated(JubaoError):
    code = Code.UNAUTHENTICATED


_BY_CODE: Final[dict[Code, type[JubaoError]]] = {
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


def error_class(code: int) -> type[JubaoError]:
    """The exception class of a status code, by its number (`Code` or any int)."""
    known = code in Code._value2member_map_
    return _BY_CODE.get(Code(code), JubaoError) if known else JubaoError


def error_from_status(code: int, status: status_pb2.Status | None, message: str) -> JubaoError:
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
    from grpc_status import rpc_status  # noqa: PLC0415 (gRPC only where gRPC is used)

    call: grpc.Call = error  # type: ignore[assignment]
    status = rpc_status.from_call(call)
    return error_from_status(call.code().value[0], status, call.details() or "")
