"""The canary beside a load (`machine_stall_max_ms`): a process of its own that reports how late it woke."""

from __future__ import annotations

import time

from loadtest.harness import machine_stalls


def test_the_canary_reports_its_longest_oversleep() -> None:
    with machine_stalls() as stalls:
        time.sleep(0.5)
        assert stalls.max_ms == 0.0  # read once the canary stopped
    assert 0.0 < stalls.max_ms < 60_000.0
