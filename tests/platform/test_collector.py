"""The server process's heap freezer (platform/collector.py): a full collection walks only what was
promoted since the one before, and the frozen heap goes back to the collector now and then."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from jubao_server.platform.collector import HeapFreezer

KEPT_OBJECTS = 10_000


@pytest.fixture
def freezer() -> Iterator[HeapFreezer]:
    installed = HeapFreezer()
    installed.install()
    yield installed
    installed.uninstall()


def test_start_and_every_full_collection_freeze_what_survives(freezer: HeapFreezer) -> None:
    frozen_at_start = gc.get_freeze_count()
    assert frozen_at_start > 0
    kept = [[index] for index in range(KEPT_OBJECTS)]
    gc.collect()
    assert freezer.full_collections == 1
    assert gc.get_freeze_count() >= frozen_at_start + KEPT_OBJECTS
    assert all(gc.is_tracked(item) for item in kept)


def test_a_cycle_frozen_meanwhile_is_freed_once_the_heap_thaws() -> None:
    freezer = HeapFreezer(interval_s=0.0)
    freezer.install()
    try:
        cycle: list[object] = []
        cycle.append(cycle)
        gc.freeze()
        del cycle
        gc.collect()  # the full collection after which the heap thaws
        assert gc.get_freeze_count() == 0
        assert gc.collect() >= 1  # walks everything, the cycle with it
    finally:
        freezer.uninstall()
