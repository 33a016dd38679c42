"""`FaultPlan`: the faults a test or the simulator arms on a backend (`storage.contract.faults.Faults`)."""

from __future__ import annotations

import asyncio
import dataclasses
import random

from jubao_server.storage.contract import LostAnswer, StorageError


@dataclasses.dataclass
class FaultPlan:
    """`conditional_timeouts` next conditional writes lose their answer; with `applied_before_timeout`
    the write reaches storage first, else it never does. `storage_errors` next operations of any kind
    fail with StorageError before touching storage. With `delays`, an operation waits a seeded delay
    first (up to `delay_max_s`, one in `1 / delay_probability`), so that seeded runs interleave
    differently, the same way on every replay."""

    conditional_timeouts: int = 0
    applied_before_timeout: bool = True
    storage_errors: int = 0
    delays: random.Random | None = None
    delay_probability: float = 0.1
    delay_max_s: float = 0.005

    async def before_operation(self) -> None:
        if self.delays is not None and self.delays.random() < self.delay_probability:
            await asyncio.sleep(self.delays.uniform(0, self.delay_max_s))
        if self.storage_errors > 0:
            self.storage_errors -= 1
            raise StorageError("injected storage fault")

    def lost_answer(self) -> LostAnswer:
        if self.conditional_timeouts <= 0:
            return LostAnswer.NONE
        self.conditional_timeouts -= 1
        return LostAnswer.APPLIED if self.applied_before_timeout else LostAnswer.NOT_APPLIED
