"""The one clock: every reading of the time and every wait goes through a `Clock` handed down from the
composition root, so that the simulator can run the same code on simulated time (`tests/sim/`).

* `wall_ms()`: milliseconds since the Unix epoch, for what is stored or shown (timestamps, TTL expiry,
  leases shared between processes). It may jump when the machine's clock is set.
* `monotonic_s()`: seconds from an arbitrary origin, never going back, for timeouts and intervals inside
  one process.
* `sleep(delay_s)`: wait that long on the clock's own time.
"""

from __future__ import annotations

import asyncio
import time
import typing
from typing import Final


class Clock(typing.Protocol):
    def wall_ms(self) -> int: ...

    def monotonic_s(self) -> float: ...

    async def sleep(self, delay_s: float) -> None: ...


class SystemClock:
    """The machine's clocks and the running event loop's timers."""

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        return time.monotonic()

    async def sleep(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)


SYSTEM_CLOCK: Final[Clock] = SystemClock()
