"""How long this machine leaves a process waiting: `machine_stall_max_ms` beside the server's stalls.

A process that does nothing but sleep `tick_s` at a time (no GIL to share, no garbage, no storage) should
wake on time; how late it wakes is the stall the machine itself puts on every process (other processes on
its cores, the hypervisor, the disk's writeback), measured in the same seconds as a load. A server stall
the canary shares is the machine's; one it does not share is the server's.

`python -m loadtest.canary` runs until SIGTERM and prints its longest oversleep in milliseconds
(`harness.machine_stalls` starts it around a load).
"""

from __future__ import annotations

import signal
import time
from typing import Final

tick_s: Final = 0.01


def main() -> None:
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    worst_s = 0.0
    while not stopped:
        started_s = time.perf_counter()
        time.sleep(tick_s)
        worst_s = max(worst_s, time.perf_counter() - started_s - tick_s)
    print(f"{worst_s * 1000:.1f}", flush=True)


if __name__ == "__main__":
    main()
