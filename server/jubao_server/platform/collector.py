"""Python's garbage collector, kept from stalling a server process.

A full collection (generation 2) walks every container object the process keeps: the modules and
protobuf descriptors loaded at start, and the shard owners' state (accounts, recent transfers), which
grows with the ledger. Measured on a server at half its unary peak on the 10,000 accounts of the bench
(make bench's shape, SQLite), a full collection ran every 2 to 25 s and took 60 to 830 ms, during which
no call was answered: the stalls of the payments issue. None of those objects is garbage: a full
collection found 0 to 250 unreachable objects among 150,000.

So the server process freezes its heap (`gc.freeze()`: the objects move to a permanent generation the
collector never walks) once it has started, and again after every full collection: a full collection
then walks only what was promoted since the one before, a few milliseconds (3 to 12 ms in the same
run). Young generations are collected as before, so short-lived cycles (a request's) are freed as
usual. What this gives up: a cycle among frozen objects that becomes unreachable later is not freed
until the frozen heap is collected again; measured, 96 objects in 100 s of load. The frozen heap is
handed back to the collector (`gc.unfreeze()`, so the next full collection walks all of it once) every
`limits.gc_frozen_collect_interval_s`, which bounds that leak.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Final

from jubao_server import limits

_FULL: Final = 2


class HeapFreezer:
    """Installed once per server process, after its start (`install`), and in a load's worker for the
    load (loadtest/engine.py), never in a test's process."""

    def __init__(self, interval_s: float = limits.gc_frozen_collect_interval_s) -> None:
        self._interval_s = interval_s
        self._thawed_at_s = time.monotonic()
        self.full_collections = 0

    def install(self) -> None:
        """Collect and freeze what starting the server left, then freeze after every full collection."""
        gc.collect()
        gc.freeze()
        gc.callbacks.append(self._collected)

    def uninstall(self) -> None:
        if self._collected in gc.callbacks:
            gc.callbacks.remove(self._collected)
        gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info["generation"] != _FULL:
            return
        self.full_collections += 1
        now_s = time.monotonic()
        if now_s - self._thawed_at_s >= self._interval_s:
            # The next full collection walks the whole heap once and frees the cycles frozen meanwhile.
            self._thawed_at_s = now_s
            gc.unfreeze()
        else:
            gc.freeze()
