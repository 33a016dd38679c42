"""The caller of the current RPC, set by the call pipeline before a servicer runs."""

from __future__ import annotations

import contextvars

from jubao_server.invariants import ensure
from jubao_server.tenancy.auth import Caller

_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("jubao_caller", default=None)


def current_caller() -> Caller:
    caller = _caller.get()
    ensure(caller is not None, "servicer ran without an authenticated caller")
    return caller  # type: ignore[return-value]


def set_caller(caller: Caller) -> contextvars.Token[Caller | None]:
    return _caller.set(caller)


def reset_caller(token: contextvars.Token[Caller | None]) -> None:
    _caller.reset(token)
