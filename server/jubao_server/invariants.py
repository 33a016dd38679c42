"""Invariant checks that survive `python -O`.

A failed invariant is a programmer error or corrupted state, never bad input: it raises
`InvariantViolation`, which the gRPC layer maps to INTERNAL and logs loudly. Bad input is rejected
with `jubao_server.errors.ApiError` instead.
"""

from __future__ import annotations

from typing import NoReturn


class InvariantViolation(AssertionError):
    """An internal invariant did not hold."""


def ensure(condition: bool, message: str) -> None:
    """Raise `InvariantViolation` with `message` unless `condition` holds."""
    if not condition:
        raise InvariantViolation(message)


def violated(message: str) -> NoReturn:
    """Raise `InvariantViolation`: for checks on hot paths, which build their message only when they
    fail (`ensure` takes it built)."""
    raise InvariantViolation(message)


def unreachable(message: str) -> NoReturn:
    raise InvariantViolation(f"unreachable: {message}")
