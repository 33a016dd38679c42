"""Storage micro-benchmarks: the throughput of one backend for plain, conditional and multi-row batches
and for point reads. They use product tables (`request_log`, `tenancy_api_keys`) under fresh random
scopes, and every row carries a TTL so that nothing accumulates."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from jubao_server import limits
from jubao_server.invariants import ensure
from jubao_server.platform.idempotency import REQUEST_LOG
from jubao_server.storage.contract import Batch, Put, RowAbsent, StorageBackend, Value
from jubao_server.tenancy.tables import API_KEYS

CONCURRENCY: Final = 32
BATCH_ROWS: Final = 100
BENCH_ROW_TTL_S: Final = 3600
_RESPONSE: Final = bytes(range(64))

Figure = dict[str, str | int]
# One operation of worker `w`, number `i`; returns how many rows it wrote or read.
Operation = Callable[[int, int], Awaitable[int]]


async def _throughput(seconds: float, operation: Operation) -> tuple[float, list[int]]:
    """Rows per second over CONCURRENCY workers running until the deadline, and each worker's op count."""
    deadline = time.monotonic() + seconds

    async def worker(w: int) -> tuple[int, int]:
        rows = 0
        for i in range(limits.bench_ops_per_worker_max):
            if time.monotonic() >= deadline:
                return i, rows
            rows += await operation(w, i)
        return limits.bench_ops_per_worker_max, rows

    start = time.monotonic()
    results = await asyncio.gather(*(worker(w) for w in range(CONCURRENCY)))
    elapsed_s = time.monotonic() - start
    return sum(rows for _, rows in results) / elapsed_s, [ops for ops, _ in results]


def _log_entry(method: str) -> dict[str, Value]:
    return {"method": method, "body_sha256": "0" * 64, "response": _RESPONSE, "create_time_ms": 0}


class _Bench:
    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend
        self.scope = f"bench-{uuid.uuid4().hex[:12]}"

    async def plain_write(self, w: int, i: int) -> int:
        put = Put((), _log_entry("bench.Plain"), ttl_s=BENCH_ROW_TTL_S)
        outcome = await self.backend.write(Batch(REQUEST_LOG.partition(self.scope, f"plain-{w}-{i}"), (put,)))
        ensure(outcome.applied, "an unconditional write did not apply")
        return 1

    async def conditional_write(self, w: int, i: int) -> int:
        put = Put((), _log_entry("bench.Conditional"), ttl_s=BENCH_ROW_TTL_S)
        partition = REQUEST_LOG.partition(self.scope, f"cond-{w}-{i}")
        outcome = await self.backend.write(Batch(partition, (put,), conditions=(RowAbsent(()),)))
        ensure(outcome.applied, "a conditional insert of a fresh key did not apply")
        return 1

    async def batch_write(self, w: int, i: int) -> int:
        values: dict[str, Value] = {"display_name": "bench", "state": "ACTIVE", "create_time_ms": 0}
        puts = tuple(Put((f"key-{i:08d}-{j:03d}",), values, ttl_s=BENCH_ROW_TTL_S) for j in range(BATCH_ROWS))
        outcome = await self.backend.write(Batch(API_KEYS.partition(f"{self.scope}-{w}"), puts))
        ensure(outcome.applied, "an unconditional batch did not apply")
        return BATCH_ROWS

    def point_read(self, written: list[int]) -> Operation:
        """Reads of rows `plain_write` wrote (`written[w]` by worker w), in a seeded random order."""
        keys = [f"plain-{w}-{i}" for w, count in enumerate(written) for i in range(count)]
        ensure(bool(keys), "no rows to read: the plain write figure wrote nothing")
        picks = [random.Random(w) for w in range(CONCURRENCY)]

        async def read(w: int, i: int) -> int:
            key = keys[picks[w].randrange(len(keys))]
            row = await self.backend.read_row(REQUEST_LOG.partition(self.scope, key))
            ensure(row is not None, f"bench row {key} is missing")
            return 1

        return read


def _figure(backend: StorageBackend, name: str, per_s: float, unit: str, notes: str) -> Figure:
    return {"name": name, "value": round(per_s), "unit": unit, "backend": backend.name, "notes": notes}


async def run_storage_bench(backend: StorageBackend, seconds_per_figure: float) -> list[Figure]:
    """Four throughput figures, each measured for `seconds_per_figure` with CONCURRENCY workers."""
    bench = _Bench(backend)
    workers = f"{CONCURRENCY} concurrent workers"
    plain_per_s, written = await _throughput(seconds_per_figure, bench.plain_write)
    conditional_per_s, _ = await _throughput(seconds_per_figure, bench.conditional_write)
    batch_per_s, _ = await _throughput(seconds_per_figure, bench.batch_write)
    reads_per_s, _ = await _throughput(seconds_per_figure, bench.point_read(written))
    figures = [
        (
            "storage_plain_writes_per_s",
            plain_per_s,
            "writes/s",
            "single-row unconditional batches, request_log",
        ),
        ("storage_conditional_writes_per_s", conditional_per_s, "writes/s", "RowAbsent inserts, request_log"),
        ("storage_batch_rows_per_s", batch_per_s, "rows/s", f"{BATCH_ROWS}-row batches, tenancy_api_keys"),
        ("storage_point_reads_per_s", reads_per_s, "reads/s", "read_row of random request_log rows"),
    ]
    return [
        _figure(backend, name, per_s, unit, f"{notes}, {workers}") for name, per_s, unit, notes in figures
    ]
