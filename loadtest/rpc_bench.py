"""RPC throughput and latency through the real client stack, from several worker processes.

Each worker process runs one `AsyncClient` (the SDK: auth metadata, deadlines, error mapping). Closed
loop: `concurrency` callers each send their next call when the previous answers (the ceiling). Open
loop: calls are sent on a schedule at `rate_per_s` in all, and latency is measured from the scheduled
send time, so a slow server cannot hide its queueing. Latencies go into HDR histograms that the parent
merges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Final

from hdrh.histogram import HdrHistogram
from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.meta.v1 import meta_pb2
from jubao.payments.v1 import payments_pb2
from jubao_server import limits

LATENCY_MAX_US: Final = 60_000_000
LATENCY_DIGITS: Final = 3
open_loop_in_flight_max: Final = 2_000


@dataclasses.dataclass(frozen=True)
class Workload:
    """What each call does: `ping`, `transfer` (random payer and payee among `accounts`) or `transfer_hot`
    (random payer, every payee `hot_account`)."""

    kind: str
    account_prefix: str = ""
    accounts: int = 0
    hot_account: str = ""
    currency: str = "CNY"


@dataclasses.dataclass(frozen=True)
class RpcLoad:
    endpoint: str
    api_key: str
    seconds: float
    warmup_s: float
    concurrency: int
    workers: int
    workload: Workload = Workload("ping")
    # Open loop at this total rate when set; closed loop with `concurrency` callers otherwise.
    rate_per_s: float | None = None


@dataclasses.dataclass(frozen=True)
class RpcResult:
    calls: int
    errors: int
    elapsed_s: float
    histogram: HdrHistogram

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, percentile: float) -> float:
        return float(self.histogram.get_value_at_percentile(percentile)) / 1000


def measure(load: RpcLoad) -> RpcResult:
    """Run `workers` processes of the load; merge their counts and histograms."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=load.workers, mp_context=context) as pool:
        parts = list(pool.map(_worker, [(load, index) for index in range(load.workers)]))
    histogram = HdrHistogram(1, LATENCY_MAX_US, LATENCY_DIGITS)
    for _, _, _, encoded in parts:
        histogram.add(HdrHistogram.decode(encoded))
    elapsed_s = max(part[2] for part in parts)
    return RpcResult(sum(p[0] for p in parts), sum(p[1] for p in parts), elapsed_s, histogram)


def _worker(job: tuple[RpcLoad, int]) -> tuple[int, int, float, bytes]:
    return asyncio.run(_drive(*job))


class _Tally:
    def __init__(self, histogram: HdrHistogram | None) -> None:
        self.histogram = histogram
        self.calls = 0
        self.errors = 0

    def record(self, started_s: float, ok: bool) -> None:
        if ok:
            self.calls += 1
        else:
            self.errors += 1
        if self.histogram is not None:
            self.histogram.record_value(max(1, int((time.perf_counter() - started_s) * 1_000_000)))


async def _drive(load: RpcLoad, worker: int) -> tuple[int, int, float, bytes]:
    histogram = HdrHistogram(1, LATENCY_MAX_US, LATENCY_DIGITS)
    tally = _Tally(histogram)
    async with AsyncClient(ClientConfig(endpoint=load.endpoint, api_key=load.api_key)) as client:
        call = _call_of(client, load.workload, random.Random(worker))
        run = _open_loop if load.rate_per_s else _closed_loop
        await run(load, call, load.warmup_s, _Tally(None))
        started_s = time.perf_counter()
        await run(load, call, load.seconds, tally)
        elapsed_s = time.perf_counter() - started_s
    return tally.calls, tally.errors, elapsed_s, histogram.encode()


Call = Callable[[], Awaitable[object]]


def _call_of(client: AsyncClient, workload: Workload, rng: random.Random) -> Call:
    if workload.kind == "ping":
        request = meta_pb2.PingRequest()
        return lambda: client.meta.Ping(request)

    def transfer() -> Awaitable[object]:
        payer = rng.randrange(workload.accounts)
        payee = (payer + 1 + rng.randrange(workload.accounts - 1)) % workload.accounts
        credit = workload.hot_account or f"{workload.account_prefix}{payee}"
        leg = payments_pb2.Leg(
            debit_account_id=f"{workload.account_prefix}{payer}",
            credit_account_id=credit,
            amount_minor=rng.randrange(1, 100),
        )
        request = payments_pb2.CreateTransferRequest(
            currency_code=workload.currency, legs=[leg], memo="bench"
        )
        return client.payments.CreateTransfer(request)

    return transfer


async def _attempt(call: Call, started_s: float, tally: _Tally) -> None:
    try:
        await call()
        tally.record(started_s, ok=True)
    except JubaoError:
        tally.record(started_s, ok=False)


async def _closed_loop(load: RpcLoad, call: Call, seconds: float, tally: _Tally) -> None:
    deadline_s = time.perf_counter() + seconds

    async def caller() -> None:
        for _ in range(limits.bench_ops_per_worker_max):
            started_s = time.perf_counter()
            if started_s >= deadline_s:
                return
            await _attempt(call, started_s, tally)

    await asyncio.gather(*(caller() for _ in range(load.concurrency)))


async def _open_loop(load: RpcLoad, call: Call, seconds: float, tally: _Tally) -> None:
    """Send on a fixed schedule; a call that cannot start because too many are in flight counts as an
    error at its scheduled time rather than silently delaying the schedule."""
    interval_s = load.workers / (load.rate_per_s or 1.0)
    begin_s = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    for index in range(min(int(seconds / interval_s), limits.bench_ops_per_worker_max)):
        scheduled_s = begin_s + index * interval_s
        await asyncio.sleep(max(0.0, scheduled_s - time.perf_counter()))
        if len(in_flight) >= open_loop_in_flight_max:
            tally.record(scheduled_s, ok=False)
            continue
        task = asyncio.create_task(_attempt(call, scheduled_s, tally))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
