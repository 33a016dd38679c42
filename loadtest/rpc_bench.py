"""Closed-loop RPC throughput through the real client stack, from several worker processes.

Each worker process runs one `AsyncClient` (the SDK: auth metadata, deadlines, error mapping) with
`concurrency` callers in flight; latencies go into an HDR histogram that the parent merges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Final

from hdrh.histogram import HdrHistogram
from jubao.client import AsyncClient, ClientConfig, JubaoError
from jubao.meta.v1 import meta_pb2
from jubao_server import limits

LATENCY_MAX_US: Final = 60_000_000
LATENCY_DIGITS: Final = 3


@dataclasses.dataclass(frozen=True)
class RpcLoad:
    endpoint: str
    api_key: str
    seconds: float
    warmup_s: float
    concurrency: int
    workers: int


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


def measure_empty_rpc(load: RpcLoad) -> RpcResult:
    """Run `workers` processes of `concurrency` Ping callers each; merge their counts and histograms."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=load.workers, mp_context=context) as pool:
        parts = list(pool.map(_worker, [load] * load.workers))
    histogram = HdrHistogram(1, LATENCY_MAX_US, LATENCY_DIGITS)
    for _, _, _, encoded in parts:
        histogram.add(HdrHistogram.decode(encoded))
    elapsed_s = max(part[2] for part in parts)
    return RpcResult(sum(p[0] for p in parts), sum(p[1] for p in parts), elapsed_s, histogram)


def _worker(load: RpcLoad) -> tuple[int, int, float, bytes]:
    return asyncio.run(_drive(load))


async def _drive(load: RpcLoad) -> tuple[int, int, float, bytes]:
    histogram = HdrHistogram(1, LATENCY_MAX_US, LATENCY_DIGITS)
    counts = [0, 0]
    async with AsyncClient(ClientConfig(endpoint=load.endpoint, api_key=load.api_key)) as client:
        await _run_for(client, load.warmup_s, load.concurrency, None, [0, 0])
        started_s = time.perf_counter()
        await _run_for(client, load.seconds, load.concurrency, histogram, counts)
        elapsed_s = time.perf_counter() - started_s
    return counts[0], counts[1], elapsed_s, histogram.encode()


async def _run_for(
    client: AsyncClient, seconds: float, concurrency: int, histogram: HdrHistogram | None, counts: list[int]
) -> None:
    deadline_s = time.perf_counter() + seconds
    request = meta_pb2.PingRequest()

    async def caller() -> None:
        for _ in range(limits.bench_ops_per_worker_max):
            started_s = time.perf_counter()
            if started_s >= deadline_s:
                return
            try:
                await client.meta.Ping(request)
                counts[0] += 1
            except JubaoError:
                counts[1] += 1
            if histogram is not None:
                histogram.record_value(max(1, int((time.perf_counter() - started_s) * 1_000_000)))

    await asyncio.gather(*(caller() for _ in range(concurrency)))
