"""Requests whose outcome is unknown: what the server may or may not have done (a timeout, UNAVAILABLE), and
sending such a request again, with its request id, until the answer is known."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from jubao.client import JubaoError
from jubao.reasons import Code

from loadtest import bounds

T = TypeVar("T")
# After these the request may or may not have been applied: it is sent again, with the same request id.
UNKNOWN_OUTCOMES: Final = frozenset(
    {Code.DEADLINE_EXCEEDED, Code.UNAVAILABLE, Code.CANCELLED, Code.INTERNAL, Code.UNKNOWN}
)


async def until_known(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, again with backoff while its outcome is unknown (for `resolve_for_max_s`, then once
    more); each call must send the same request id, so that a retry is one. Other errors are raised."""
    give_up_s = time.monotonic() + bounds.resolve_for_max_s
    backoff_s = bounds.resolve_backoff_initial_s
    for _ in range(bounds.resolve_attempts_max - 1):
        try:
            return await call()
        except JubaoError as error:
            if error.code not in UNKNOWN_OUTCOMES:
                raise
        if time.monotonic() + backoff_s > give_up_s:
            break
        await asyncio.sleep(backoff_s)
        backoff_s = min(2 * backoff_s, bounds.resolve_backoff_max_s)
    return await call()


def status_code(value: int) -> Code:
    return Code(value) if value in Code._value2member_map_ else Code.UNKNOWN
