"""A bound on operations in flight whose acquire costs O(1) however many callers wait.

`asyncio.Semaphore.acquire` scans its waiters on every call (Python 3.11), which costs more than the
storage operation it guards once a thousand callers queue behind it. Waiters are served in arrival order.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

from jubao_server.invariants import ensure


class Slots:
    def __init__(self, slots_max: int) -> None:
        ensure(slots_max > 0, "a bound of slots must be positive")
        self._free = slots_max
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        """Hand the slot to the first waiter still waiting, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
