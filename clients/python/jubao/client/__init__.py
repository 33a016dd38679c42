"""Typed sync and asyncio clients of the jubao service, with its error types.

`Client(ClientConfig(api_key=...))` (or `AsyncClient`) exposes one stub per service, `client.admin`,
`client.bulk` (uploads' progress; the data itself moves over Arrow Flight, `jubao.bulk`), `client.meta` and
`client.payments`; a failed call raises the `JubaoError` subclass of its status code.

The names are loaded on first use, so `jubao.client.config` alone (the `jubao` command's options) does
not import gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
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

_MODULE_OF: Final = {
    "AsyncClient": "jubao.client.async_client",
    "Client": "jubao.client.sync_client",
    "ClientConfig": "jubao.client.config",
    "ConfigError": "jubao.client.config",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF.get(name, "jubao.errors")), name)
    globals()[name] = value
    return value
