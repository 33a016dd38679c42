"""Per-tenant admission: a token bucket for the request rate and a cap on calls in flight.

State is per server process and lives on the event loop thread, so it needs no locks. A tenant over its
rate or its concurrency cap is refused at once with RESOURCE_EXHAUSTED and a RetryInfo, and holds no
server slot while refused; other tenants' buckets and caps are untouched, so one tenant's flood cannot
starve another.
"""

from __future__ import annotations

import dataclasses
import math

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import resource_exhausted
from jubao_server.invariants import ensure
from jubao_server.tenancy.model import Quota, Tenant


@dataclasses.dataclass
class TokenBucket:
    quota: Quota
    tokens: float
    updated_s: float

    def take(self, now_s: float) -> int | None:
        """Take one token; None on success, else the milliseconds until one is available."""
        elapsed_s = max(0.0, now_s - self.updated_s)
        self.tokens = min(
            float(self.quota.burst_requests), self.tokens + elapsed_s * self.quota.requests_per_s
        )
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        wait_ms = math.ceil((1.0 - self.tokens) * 1000 / self.quota.requests_per_s)
        return min(max(wait_ms, 1), limits.retry_after_max_ms)

    def reconfigure(self, quota: Quota) -> None:
        self.quota = quota
        self.tokens = min(self.tokens, float(quota.burst_requests))


class Admission:
    """A granted call slot; `release` exactly once when the call ends."""

    __slots__ = ("_gate", "_released", "_tenant_id")

    def __init__(self, gate: QuotaGate, tenant_id: str) -> None:
        self._gate = gate
        self._tenant_id = tenant_id
        self._released = False

    def release(self) -> None:
        ensure(not self._released, "admission released twice")
        self._released = True
        self._gate.finish(self._tenant_id)


class QuotaGate:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}

    def admit(self, tenant: Tenant) -> Admission:
        """Grant a slot or raise RESOURCE_EXHAUSTED (RATE_LIMITED or CONCURRENCY_LIMITED)."""
        in_flight = self._in_flight.get(tenant.tenant_id, 0)
        if in_flight >= tenant.quota.concurrent_calls_max:
            raise resource_exhausted(
                Reason.CONCURRENCY_LIMITED,
                f"tenant {tenant.tenant_id} has {in_flight} calls in flight, its limit",
                retry_delay_ms=10,
                concurrent_calls_max=str(tenant.quota.concurrent_calls_max),
            )
        wait_ms = self._bucket(tenant).take(self._clock.monotonic_s())
        if wait_ms is not None:
            raise resource_exhausted(
                Reason.RATE_LIMITED,
                f"tenant {tenant.tenant_id} is over its rate of {tenant.quota.requests_per_s} requests/s",
                retry_delay_ms=wait_ms,
                requests_per_s=str(tenant.quota.requests_per_s),
            )
        self._in_flight[tenant.tenant_id] = in_flight + 1
        return Admission(self, tenant.tenant_id)

    def finish(self, tenant_id: str) -> None:
        remaining = self._in_flight[tenant_id] - 1
        ensure(remaining >= 0, "negative in-flight count")
        if remaining:
            self._in_flight[tenant_id] = remaining
        else:
            del self._in_flight[tenant_id]

    def in_flight(self, tenant_id: str) -> int:
        return self._in_flight.get(tenant_id, 0)

    def _bucket(self, tenant: Tenant) -> TokenBucket:
        bucket = self._buckets.get(tenant.tenant_id)
        if bucket is None:
            ensure(len(self._buckets) < limits.quota_buckets_max, "more quota buckets than tenants_max")
            bucket = TokenBucket(tenant.quota, float(tenant.quota.burst_requests), self._clock.monotonic_s())
            self._buckets[tenant.tenant_id] = bucket
        elif bucket.quota != tenant.quota:
            bucket.reconfigure(tenant.quota)
        return bucket
