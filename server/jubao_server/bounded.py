"""Bounded memories: what a process keeps of what it has seen lately (a shard owner's recent transfers,
requests and markers, the credentials it resolved), with a bound on their number and an amortized
constant cost per entry."""

from __future__ import annotations

import itertools
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def keep_recent(recent: dict[K, V], new: dict[K, V], entries_max: int) -> None:
    """Add `new` to `recent`; past `entries_max`, forget the oldest down to `entries_max` less an eighth,
    at once.

    Forgetting one at a time (`del recent[next(iter(recent))]` per entry added) cost a scan per entry:
    a dict keeps the slots of deleted entries until it resizes, and finding the first entry steps over
    them all. At the bounds of 100,000 that was about 36 µs per entry added, against 0.5 µs now (the
    scan runs once per eighth of the bound)."""
    recent.update(new)
    if len(recent) > entries_max:
        oldest = len(recent) - (entries_max - entries_max // 8)
        for key in list(itertools.islice(recent, oldest)):
            del recent[key]
