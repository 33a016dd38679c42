"""Fault injection: the hooks every backend calls, so that tests and the simulator can make storage
fail on purpose. Production passes `NO_FAULTS`; the plans that tests arm live under `tests/sim/`."""

from __future__ import annotations

import typing
from enum import StrEnum
from typing import Final


class LostAnswer(StrEnum):
    """What happens to the answer of a conditional write about to be sent."""

    NONE = "none"  # it arrives
    APPLIED = "applied"  # the write reaches storage, then its answer is lost
    NOT_APPLIED = "not_applied"  # the write is lost on the way, and so is its answer


class Faults(typing.Protocol):
    async def before_operation(self) -> None:
        """Called by every operation (reads, writes, migrations, readiness probes) before it touches
        storage. Raising StorageError fails the operation having done nothing; a simulator may also wait
        here, on its own clock."""

    def lost_answer(self) -> LostAnswer:
        """Called before each attempt of a conditional write is sent."""


class NoFaults:
    """Storage as it is: nothing injected."""

    async def before_operation(self) -> None:
        return None

    def lost_answer(self) -> LostAnswer:
        return LostAnswer.NONE


NO_FAULTS: Final[Faults] = NoFaults()
