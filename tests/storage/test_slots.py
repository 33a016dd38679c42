"""`Slots`: never more holders than slots, waiters served in order, cancelled waiters leak nothing."""

from __future__ import annotations

import asyncio

from jubao_server.storage.slots import Slots


async def test_holders_never_exceed_the_slots_and_wait_in_order() -> None:
    slots = Slots(3)
    holding = 0
    peak = 0
    order: list[int] = []

    async def hold(index: int) -> None:
        nonlocal holding, peak
        async with slots:
            order.append(index)
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(hold(i) for i in range(50)))
    assert peak == 3
    assert order == list(range(50))


async def test_a_cancelled_waiter_gives_its_slot_on() -> None:
    slots = Slots(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with slots:
            await release.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(holder())
    waiting = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, waiting), timeout=5)
    assert cancelled.cancelled()
    async with slots:
        pass
    async with asyncio.timeout(1):
        async with slots:
            pass
