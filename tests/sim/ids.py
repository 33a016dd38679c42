"""`SeededIds`: an `IdSource` drawing from a seeded generator, so that a simulated run names the same
nodes and requests every time."""

from __future__ import annotations

import random


class SeededIds:
    def __init__(self, seed: str) -> None:
        self._rng = random.Random(seed)

    def new_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"
