"""A seeded scenario on simulated time and the memory backend, whose trace must replay exactly.

Workers (coroutines) sleep for seeded random times and then write to and read from a `MemoryBackend`:
compare-and-set increments of one counter, rows with TTLs (read back before and after they expire),
conditional appends to an event stream and pages of it, and waits cut short by `asyncio.timeout`. A
fault injector arms lost answers of conditional writes (applied or not) and storage errors, and a ticker
runs on `loop.call_later`. Every step is recorded with the simulated time; the trace's SHA-256 is the
run's fingerprint. `python -m tests.sim.scenario <seed>` prints it, for a replay in another process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Final

from jubao_server.storage.contract import (
    Batch,
    Bound,
    Consistency,
    Put,
    RowAbsent,
    RowMatches,
    RowQuery,
    StorageError,
    Value,
)
from jubao_server.storage.memory import MemoryBackend

from tests.sim.faults import FaultPlan
from tests.sim.virtual_time import SimClock, run_simulated
from tests.storage.support import migration_sets, read_all
from tests.storage.tables import EVENTS, KV

SCOPE: Final = "sim"
workers: Final = 6
steps_per_worker: Final = 150
pause_max_s: Final = 150  # a worker's pause between steps, whole seconds (so workers meet): ~3 hours
ttl_s_range: Final = (1, 900)
wait_max_s: Final = 4.0
fault_period_s: Final = (60.0, 600.0)
tick_period_s: Final = 300.0
page_rows: Final = 5


@dataclasses.dataclass(frozen=True)
class Result:
    trace_hash: str
    simulated_s: float
    elapsed_s: float
    steps: int
    counts: Counter[str]


class Run:
    def __init__(self, seed: int, clock: SimClock, backend: MemoryBackend, faults: FaultPlan) -> None:
        self.seed = seed
        self.clock = clock
        self.backend = backend
        self.faults = faults
        self.trace: list[str] = []
        self.counts: Counter[str] = Counter()
        self.keys: list[str] = []  # KV keys written so far, in order
        self.done = False

    def record(self, who: str, what: str, result: object) -> None:
        now = asyncio.get_running_loop().time()
        self.trace.append(f"{now:.6f} {self.clock.wall_ms()} {who} {what} {result!r}")

    async def worker(self, index: int) -> None:
        rng = random.Random(f"{self.seed}/worker/{index}")
        steps: list[Callable[[random.Random, str], Coroutine[Any, Any, None]]] = [
            self.increment,
            self.put_with_ttl,
            self.read_back,
            self.append,
            self.page,
            self.wait_with_timeout,
        ]
        for step in range(steps_per_worker):
            await asyncio.sleep(rng.randint(0, pause_max_s))
            who = f"w{index}.{step}"
            try:
                await rng.choice(steps)(rng, who)
            except StorageError as error:
                self.counts["storage_error"] += 1
                self.record(who, "storage_error", str(error))

    async def increment(self, rng: random.Random, who: str) -> None:
        """One to three compare-and-set increments at once, racing each other and the other workers."""
        racers = [self.increment_once(f"{who}/{n}") for n in range(rng.randint(1, 3))]
        await asyncio.gather(*racers)

    async def increment_once(self, who: str) -> None:
        partition = KV.partition(SCOPE, "counter")
        row = await self.backend.read_row(partition, (), Consistency.SERIAL)
        seen = None if row is None else row["n"]
        put = Put((), {"n": (seen if isinstance(seen, int) else 0) + 1, "v": who})
        condition = RowAbsent(()) if row is None else RowMatches((), {"n": seen})
        outcome = await self.backend.write(Batch(partition, puts=(put,), conditions=(condition,)))
        self.counts["cas_applied" if outcome.applied else "cas_refused"] += 1
        self.counts["lost_answer_resolved"] += outcome.resolved_unknown
        self.record(who, "increment", (seen, outcome.applied, outcome.resolved_unknown))

    async def put_with_ttl(self, rng: random.Random, who: str) -> None:
        ttl_s = rng.randint(*ttl_s_range)
        await self.backend.write(Batch(KV.partition(SCOPE, who), puts=(Put((), {"v": who}, ttl_s=ttl_s),)))
        self.keys.append(who)
        self.record(who, "put", ttl_s)

    async def read_back(self, rng: random.Random, who: str) -> None:
        if not self.keys:
            return
        key = rng.choice(self.keys)
        row = await self.backend.read_row(KV.partition(SCOPE, key))
        self.counts["read_live" if row is not None else "read_expired"] += 1
        self.record(who, f"read {key}", None if row is None else dict(row.values))

    async def append(self, rng: random.Random, who: str) -> None:
        partition = EVENTS.partition(SCOPE, "stream")
        clustering: tuple[Value, ...] = (self.clock.wall_ms() // 60_000, who)
        put = Put(clustering, {"body": f"{rng.random():.6f}"})
        outcome = await self.backend.write(Batch(partition, puts=(put,), conditions=(RowAbsent(clustering),)))
        self.counts["lost_answer_resolved"] += outcome.resolved_unknown
        self.record(who, "append", (clustering, outcome.applied))

    async def page(self, rng: random.Random, who: str) -> None:
        minute = self.clock.wall_ms() // 60_000
        lower = Bound((minute - rng.randint(1, 120),), inclusive=rng.random() < 0.5)
        query = RowQuery(EVENTS.partition(SCOPE, "stream"), lower=lower, reverse=True, limit=page_rows)
        page = await self.backend.read_page(query)
        self.record(who, "page", ([r["id"] for r in page.rows], page.next_after))

    async def wait_with_timeout(self, rng: random.Random, who: str) -> None:
        limit_s, wait_s = rng.uniform(0, wait_max_s), rng.uniform(0, wait_max_s)
        try:
            async with asyncio.timeout(limit_s):
                await self.clock.sleep(wait_s)
        except TimeoutError:
            self.counts["timed_out"] += 1
            self.record(who, "timed out", round(limit_s, 6))
        else:
            self.record(who, "waited", round(wait_s, 6))

    async def inject_faults(self) -> None:
        rng = random.Random(f"{self.seed}/faults")
        while not self.done:
            await asyncio.sleep(rng.uniform(*fault_period_s))
            if rng.random() < 0.5:
                self.faults.conditional_timeouts = rng.randint(1, 2)
                self.faults.applied_before_timeout = rng.random() < 0.5
            else:
                self.faults.storage_errors = 1
            self.record("faults", "armed", dataclasses.astuple(self.faults))

    def tick(self) -> None:
        """A plain callback on `call_later`, rescheduling itself until the workers are done."""
        self.counts["ticks"] += 1
        self.record("ticker", "tick", self.counts["ticks"])
        if not self.done:
            asyncio.get_running_loop().call_later(tick_period_s, self.tick)

    async def final_state(self) -> None:
        self.faults.conditional_timeouts = self.faults.storage_errors = 0
        counter = await self.backend.read_row(KV.partition(SCOPE, "counter"))
        self.record("end", "counter", None if counter is None else dict(counter.values))
        live = [key for key in self.keys if await self.backend.read_row(KV.partition(SCOPE, key))]
        self.record("end", "live keys", live)
        events = await read_all(self.backend, RowQuery(EVENTS.partition(SCOPE, "stream"), limit=page_rows))
        self.record("end", "events", [(r["ts"], r["id"], r["body"]) for r in events])


async def _run(seed: int, clock: SimClock) -> Run:
    faults = FaultPlan()
    backend = MemoryBackend(clock, faults=faults)
    await backend.migrate(migration_sets(backend.name))
    run = Run(seed, clock, backend, faults)
    asyncio.get_running_loop().call_later(tick_period_s, run.tick)
    injector = asyncio.create_task(run.inject_faults())
    await asyncio.gather(*(run.worker(index) for index in range(workers)))
    run.done = True
    injector.cancel()
    await run.final_state()
    await backend.close()
    return run


def run_scenario(seed: int) -> Result:
    clock = SimClock()
    started_s = time.perf_counter()
    run = run_simulated(_run(seed, clock), clock)
    elapsed_s = time.perf_counter() - started_s
    digest = hashlib.sha256("\n".join(run.trace).encode()).hexdigest()
    return Result(digest, clock.monotonic_s(), elapsed_s, len(run.trace), run.counts)


if __name__ == "__main__":
    print(run_scenario(int(sys.argv[1])).trace_hash)
