"""Per-tenant quotas of one Flight process: concurrent streams (over the cap: RESOURCE_EXHAUSTED
CONCURRENCY_LIMITED at once) and bytes per second (a token bucket that paces a stream: the caller waits
the time it is told rather than being refused). Flight calls run on threads, so the state is locked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import resource_exhausted
from jubao_server.invariants import ensure


class BulkQuotas:
    def __init__(self, streams_per_tenant: int, bytes_per_s: int, clock: Clock) -> None:
        self._streams_max = streams_per_tenant
        self._rate = float(bytes_per_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[str, int] = {}
        # Per tenant: (bytes available, when last refilled); a second's worth at most.
        self._buckets: dict[str, tuple[float, float]] = {}

    @contextmanager
    def stream(self, tenant_id: str) -> Iterator[None]:
        """One stream of the tenant for the duration of the block."""
        with self._lock:
            open_streams = self._streams.get(tenant_id, 0)
            if open_streams >= self._streams_max:
                raise resource_exhausted(
                    Reason.CONCURRENCY_LIMITED,
                    f"tenant {tenant_id} has {open_streams} bulk streams open, its limit",
                    retry_delay_ms=100,
                    streams_per_tenant=str(self._streams_max),
                )
            ensure(len(self._streams) < limits.quota_buckets_max, "more bulk stream counts than tenants")
            self._streams[tenant_id] = open_streams + 1
        try:
            yield
        finally:
            with self._lock:
                remaining = self._streams[tenant_id] - 1
                if remaining:
                    self._streams[tenant_id] = remaining
                else:
                    del self._streams[tenant_id]

    def delay_s(self, tenant_id: str, size_bytes: int) -> float:
        """Take `size_bytes` from the tenant's bucket; the seconds the stream should wait first."""
        with self._lock:
            now_s = self._clock.monotonic_s()
            if tenant_id not in self._buckets:
                ensure(len(self._buckets) < limits.quota_buckets_max, "more bulk buckets than tenants")
            available, updated_s = self._buckets.get(tenant_id, (self._rate, now_s))
            available = min(self._rate, available + (now_s - updated_s) * self._rate) - size_bytes
            self._buckets[tenant_id] = (available, now_s)
        return max(0.0, -available / self._rate)

    def pace(self, tenant_id: str, size_bytes: int) -> None:
        """Wait as long as the tenant's byte rate requires before moving `size_bytes` more."""
        delay_s = self.delay_s(tenant_id, size_bytes)
        if delay_s > 0:
            time.sleep(delay_s)
