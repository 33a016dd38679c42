"""The virtual-time loop: sleeps, timeouts and timers fire at their simulated times, in a fixed order;
a run that can never go on stalls loudly; threads are refused."""

from __future__ import annotations

import asyncio

import pytest
from jubao_server.clock import Clock
from jubao_server.invariants import InvariantViolation

from tests.sim.virtual_time import START_WALL_MS, SimClock, Stalled, run_simulated

DAY_S = 24 * 3600


def test_sleeps_timeouts_and_timers_run_on_simulated_time() -> None:
    clock = SimClock()
    seen: list[tuple[str, float, int]] = []

    def note(what: str) -> None:
        seen.append((what, asyncio.get_running_loop().time(), clock.wall_ms()))

    async def main(injected: Clock) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(5, note, "timer a")
        loop.call_later(5, note, "timer b")
        loop.call_later(2 * DAY_S, note, "two days")
        await injected.sleep(3)
        note("slept 3 s")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.sleep(3600)
        note("timed out")
        await asyncio.sleep(3 * DAY_S)
        note("three days later")

    run_simulated(main(clock), clock)
    assert seen == [
        ("slept 3 s", 3.0, START_WALL_MS + 3_000),
        ("timer a", 5.0, START_WALL_MS + 5_000),
        ("timer b", 5.0, START_WALL_MS + 5_000),
        ("timed out", 13.0, START_WALL_MS + 13_000),
        ("two days", 2 * DAY_S, START_WALL_MS + 2 * DAY_S * 1000),
        ("three days later", 3 * DAY_S + 13, START_WALL_MS + (3 * DAY_S + 13) * 1000),
    ]


def test_a_run_that_can_never_go_on_stalls() -> None:
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    clock = SimClock()
    with pytest.raises(Stalled):
        run_simulated(wait_forever(), clock)


def test_threads_are_refused() -> None:
    async def use_a_thread() -> None:
        await asyncio.to_thread(print, "never")

    with pytest.raises(RuntimeError, match="thread"):
        run_simulated(use_a_thread(), SimClock())


async def test_a_sim_clock_sleeps_only_on_its_own_loop() -> None:
    """On a real loop, a simulated clock's sleep would wait real time that its wall time never sees."""
    with pytest.raises(InvariantViolation, match="own loop"):
        await SimClock().sleep(0)
