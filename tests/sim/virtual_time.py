"""Simulated time: a clock that moves only when told, and an event loop that runs on it.

`VirtualTimeLoop` is an ordinary asyncio selector loop whose `time()` is the `SimClock` and whose
selector never blocks: when no callback is ready, the loop's next wait (up to its next timer) is not
slept but added to the clock. So `asyncio.sleep`, `asyncio.timeout`, `loop.call_later` and the injected
`Clock` all run on simulated time, hours of it in moments, and the order of events is fixed by the
program and its seeds alone: ready callbacks run in the order they became ready, timers in the order of
their times (then of their scheduling).

Threads would make a run depend on the machine again, so the loop refuses `run_in_executor` (and so
`asyncio.to_thread`): run it on a backend that starts none (`storage/memory/`). A run in which every task
waits for something that can never happen (no ready callback, no timer) stops with `Stalled`.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any, Final, TypeVar, TypeVarTuple

from jubao_server.invariants import ensure

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# 2025-11-11T00:00:00Z, Double 11: the wall time a simulation starts at unless told otherwise.
START_WALL_MS: Final = 1_762_819_200_000


class Stalled(RuntimeError):
    """Nothing is ready and no timer is set: every task waits for something that cannot happen."""


class SimClock:
    """A `Clock` on simulated time: the monotonic time starts at 0 s, the wall time at `start_wall_ms`,
    and both move only by `advance` (which the virtual-time loop calls when every task waits)."""

    def __init__(self, start_wall_ms: int = START_WALL_MS) -> None:
        self._start_wall_ms = start_wall_ms
        self._now_s = 0.0

    def wall_ms(self) -> int:
        return self._start_wall_ms + int(self._now_s * 1000)

    def monotonic_s(self) -> float:
        return self._now_s

    async def sleep(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        ensure(isinstance(loop, VirtualTimeLoop) and loop.clock is self, "SimClock sleeps on its own loop")
        await asyncio.sleep(delay_s)

    def advance(self, delay_s: float) -> None:
        ensure(delay_s >= 0, "simulated time never goes back")
        self._now_s += delay_s


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without waiting; a wait the loop asks for moves the clock instead. While callbacks are
    ready (`timeout` 0) it does not poll at all (a system call each time): nothing but the loop's own
    wake-up pipe is registered (no threads, no sockets), and it is read as soon as none is ready."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout == 0:
            return []
        events = super().select(0)
        if events:
            return events
        if timeout is None:
            raise Stalled("no callback is ready and no timer is set: every task waits forever")
        self._clock.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: SimClock) -> None:
        super().__init__(_VirtualSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.monotonic_s()

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[*Ts], T], *args: *Ts
    ) -> asyncio.Future[T]:
        raise RuntimeError("a thread would make the simulation depend on the machine: no executors here")


def run_simulated(main: Coroutine[Any, Any, T], clock: SimClock) -> T:
    """Run `main` to completion on a fresh virtual-time loop over `clock` (like `asyncio.run`)."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(clock)) as runner:
        return runner.run(main)
