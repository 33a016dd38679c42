"""Typed sync and asyncio clients of the jubao service, with its error types.

`Client(ClientConfig(api_key=...))` (or `AsyncClient`) exposes one stub per service, `client.admin` and
`client.meta`; a failed call raises the `JubaoError` subclass of its status code.
"""

from jubao.client.async_client import AsyncClient
from jubao.client.config import ClientConfig, ConfigError
from jubao.client.sync_client import Client
from jubao.errors import (
    ERROR_DOMAIN,
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    JubaoError,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Reason,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    error_from_rpc,
)

__all__ = [
    "ERROR_DOMAIN",
    "Aborted",
    "AlreadyExists",
    "AsyncClient",
    "Cancelled",
    "Client",
    "ClientConfig",
    "ConfigError",
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
    "error_from_rpc",
]
