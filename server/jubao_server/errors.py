"""Errors the service returns, free of any transport: `ApiError` carries a canonical `ErrorCode`, an
`ErrorInfo` reason and optional `BadRequest` field violations or `RetryInfo`; `to_status` renders it as a
`google.rpc.Status` that fits gRPC's metadata limits whatever the request held (see the `error_*` bounds
in `limits.py`). The domain raises them; each boundary maps the code to its transport (the gRPC pipeline
to a `grpc.StatusCode`), so nothing below a boundary imports gRPC."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from jubao.reasons import ERROR_DOMAIN, FieldViolation, Reason
from jubao.reasons import Code as ErrorCode  # the canonical codes (`google.rpc.Code`), shared with the SDK

from jubao_server import limits

__all__ = [
    "ApiError",
    "ErrorCode",
    "HeldElsewhere",
    "already_exists",
    "echo",
    "failed_precondition",
    "internal",
    "invalid",
    "invalid_fields",
    "not_found",
    "permission_denied",
    "resource_exhausted",
    "truncated",
    "unauthenticated",
    "unavailable",
]


class HeldElsewhere(Exception):
    """What the call needs is held by the server at `address`: the boundary forwards the call there."""

    def __init__(self, message: str, address: str) -> None:
        super().__init__(message)
        self.address = address


class ApiError(Exception):
    """A rejection with a stable reason. Raised anywhere below a servicer; nothing was written."""

    def __init__(
        self,
        code: ErrorCode,
        reason: Reason,
        message: str,
        *,
        field_violations: tuple[FieldViolation, ...] = (),
        retry_delay_ms: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.field_violations = field_violations
        self.retry_delay_ms = retry_delay_ms
        self.metadata = dict(metadata or {})

    def to_status(self) -> status_pb2.Status:
        """The status on the wire: the message, metadata values and violations cut to their bounds, and
        at most `error_field_violations_max` violations (the message of `invalid_fields` counts them all)."""
        metadata = {
            key: truncated(value, limits.error_text_bytes_max)
            for key, value in list(self.metadata.items())[: limits.error_metadata_entries_max]
        }
        details = [
            _pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN, metadata=metadata))
        ]
        if self.field_violations:
            violations = [
                error_details_pb2.BadRequest.FieldViolation(
                    field=truncated(v.field, limits.error_text_bytes_max),
                    description=truncated(v.description, limits.error_text_bytes_max),
                )
                for v in self.field_violations[: limits.error_field_violations_max]
            ]
            details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
        if self.retry_delay_ms is not None:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(self.retry_delay_ms)
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
        message = truncated(self.message, limits.error_message_bytes_max)
        return status_pb2.Status(code=int(self.code), message=message, details=details)


def truncated(text: str, bytes_max: int) -> str:
    """`text` in at most `bytes_max` bytes of UTF-8, cut at a character boundary and ending in "..."."""
    encoded = text.encode()
    if len(encoded) <= bytes_max:
        return text
    return encoded[: bytes_max - 3].decode(errors="ignore") + "..."


def echo(value: object) -> str:
    """A value of the request, quoted, as an error repeats it: cut after `error_echo_length_max`
    characters, so that a huge bad value does not make a huge error."""
    text = str(value)
    if len(text) <= limits.error_echo_length_max:
        return repr(text)
    return repr(text[: limits.error_echo_length_max]) + "..."


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def invalid(field: str, description: str) -> ApiError:
    """INVALID_ARGUMENT for one bad field."""
    return invalid_fields((FieldViolation(field, description),))


def invalid_fields(violations: tuple[FieldViolation, ...]) -> ApiError:
    shown = violations[: limits.error_field_violations_max]
    summary = "; ".join(f"{v.field}: {v.description}" for v in shown)
    if len(shown) < len(violations):
        summary = f"{len(violations)} fields are invalid, the first {len(shown)}: {summary}"
    return ApiError(ErrorCode.INVALID_ARGUMENT, Reason.INVALID_ARGUMENT, summary, field_violations=violations)


def not_found(reason: Reason, message: str, **metadata: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, reason, message, metadata=metadata)


def already_exists(reason: Reason, message: str, **metadata: str) -> ApiError:
    return ApiError(ErrorCode.ALREADY_EXISTS, reason, message, metadata=metadata)


def failed_precondition(reason: Reason, message: str, **metadata: str) -> ApiError:
    return ApiError(ErrorCode.FAILED_PRECONDITION, reason, message, metadata=metadata)


def unauthenticated(reason: Reason, message: str) -> ApiError:
    return ApiError(ErrorCode.UNAUTHENTICATED, reason, message)


def permission_denied(reason: Reason, message: str, **metadata: str) -> ApiError:
    return ApiError(ErrorCode.PERMISSION_DENIED, reason, message, metadata=metadata)


def resource_exhausted(reason: Reason, message: str, retry_delay_ms: int | None, **metadata: str) -> ApiError:
    return ApiError(
        ErrorCode.RESOURCE_EXHAUSTED, reason, message, retry_delay_ms=retry_delay_ms, metadata=metadata
    )


def unavailable(reason: Reason, message: str) -> ApiError:
    return ApiError(ErrorCode.UNAVAILABLE, reason, message)


def refusal_of(error: Exception) -> ApiError:
    """A refusal as it is; storage trouble (a `StorageError`, the only other error callers pass) as
    UNAVAILABLE (STORAGE_UNAVAILABLE), which the caller retries with the same request id."""
    return error if isinstance(error, ApiError) else unavailable(Reason.STORAGE_UNAVAILABLE, str(error))


def internal(message: str) -> ApiError:
    return ApiError(ErrorCode.INTERNAL, Reason.INTERNAL, message)
