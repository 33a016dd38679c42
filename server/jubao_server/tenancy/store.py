"""TenantStore: the tenancy context's domain-level store, written once on the storage contract.

Layout: the registry is one platform partition of `tenancy_tenants` clustered by tenant id (bounded by
`tenants_max`); each tenant's API keys are one partition of `tenancy_api_keys` in the tenant's own scope;
client certificate bindings are one platform partition of `tenancy_client_certs`. Every change is a
conditional single-partition write: creates use IF NOT EXISTS, updates compare the version they read.
"""

from __future__ import annotations

from collections.abc import Callable

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.invariants import ensure
from jubao_server.storage.contract import (
    PLATFORM_SCOPE,
    Batch,
    Key,
    Put,
    Row,
    RowAbsent,
    RowMatches,
    RowQuery,
    StorageBackend,
    Value,
)
from jubao_server.tenancy.model import ApiKeyRecord, KeyState, Product, Quota, Tenant, TenantKind, TenantState
from jubao_server.tenancy.tables import API_KEYS, CLIENT_CERTIFICATES, TENANTS

update_attempts_max = 8


class ConcurrentUpdate(Exception):
    """Another writer kept winning the compare-and-set for `update_attempts_max` attempts."""


class TenantStore:
    """Times stamped on tenants, keys and certificate bindings are the injected clock's wall time."""

    def __init__(self, backend: StorageBackend, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        row = await self._backend.read_row(TENANTS.partition(PLATFORM_SCOPE), (tenant_id,))
        return _tenant_from_row(row) if row is not None else None

    async def list_tenants(self, after: str | None, limit: int) -> tuple[list[Tenant], str | None]:
        query = RowQuery(TENANTS.partition(PLATFORM_SCOPE), limit=limit)
        page = await self._backend.read_page(query.after((after,)) if after else query)
        return [_tenant_from_row(r) for r in page.rows], _next(page.next_after)

    async def create_tenant(self, tenant: Tenant) -> Tenant | None:
        """Insert a new tenant; None when the id is taken."""
        stamped = _stamp(tenant, version=1, now_ms=self._clock.wall_ms())
        put = Put((tenant.tenant_id,), _tenant_values(stamped))
        batch = Batch(TENANTS.partition(PLATFORM_SCOPE), (put,), conditions=(RowAbsent((tenant.tenant_id,)),))
        outcome = await self._backend.write(batch)
        return stamped if outcome.applied else None

    async def update_tenant(self, tenant_id: str, change: Callable[[Tenant], Tenant]) -> Tenant | None:
        """Apply `change` with compare-and-set on the version; None when the tenant does not exist."""
        for _ in range(update_attempts_max):
            current = await self.get_tenant(tenant_id)
            if current is None:
                return None
            changed = change(current)
            ensure(changed.tenant_id == tenant_id, "an update cannot rename a tenant")
            if changed == current:
                return current
            updated = _stamp(changed, version=current.version + 1, now_ms=self._clock.wall_ms())
            put = Put((tenant_id,), _tenant_values(updated))
            condition = RowMatches((tenant_id,), {"version": current.version})
            batch = Batch(TENANTS.partition(PLATFORM_SCOPE), (put,), conditions=(condition,))
            if (await self._backend.write(batch)).applied:
                return updated
        raise ConcurrentUpdate(tenant_id)

    async def get_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        row = await self._backend.read_row(API_KEYS.partition(tenant_id), (key_id,))
        return _key_from_row(tenant_id, row) if row is not None else None

    async def list_keys(
        self, tenant_id: str, after: str | None, limit: int
    ) -> tuple[list[ApiKeyRecord], str | None]:
        query = RowQuery(API_KEYS.partition(tenant_id), limit=limit)
        page = await self._backend.read_page(query.after((after,)) if after else query)
        return [_key_from_row(tenant_id, r) for r in page.rows], _next(page.next_after)

    async def find_key_by_request(self, tenant_id: str, request_id: str) -> ApiKeyRecord | None:
        """The key issued by `request_id`, scanning the tenant's bounded key partition."""
        keys, _ = await self.list_keys(tenant_id, None, limits.api_keys_per_tenant_max)
        return next((k for k in keys if request_id and k.request_id == request_id), None)

    async def count_keys(self, tenant_id: str) -> int:
        keys, _ = await self.list_keys(tenant_id, None, limits.api_keys_per_tenant_max)
        return len(keys)

    async def insert_key(self, record: ApiKeyRecord) -> bool:
        put = Put((record.key_id,), _key_values(record))
        batch = Batch(API_KEYS.partition(record.tenant_id), (put,), conditions=(RowAbsent((record.key_id,)),))
        return (await self._backend.write(batch)).applied

    async def revoke_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        """Mark the key revoked (idempotent); None when it does not exist."""
        current = await self.get_key(tenant_id, key_id)
        if current is None or current.state is KeyState.REVOKED:
            return current
        values: dict[str, Value] = {"state": KeyState.REVOKED.value, "revoke_time_ms": self._clock.wall_ms()}
        condition = RowMatches((key_id,), {"state": KeyState.ACTIVE.value})
        batch = Batch(API_KEYS.partition(tenant_id), (Put((key_id,), values),), conditions=(condition,))
        await self._backend.write(batch)
        return await self.get_key(tenant_id, key_id)

    async def bind_certificate(self, cert_sha256: str, tenant_id: str) -> bool:
        put = Put((cert_sha256,), {"tenant_id": tenant_id, "create_time_ms": self._clock.wall_ms()})
        batch = Batch(
            CLIENT_CERTIFICATES.partition(PLATFORM_SCOPE), (put,), conditions=(RowAbsent((cert_sha256,)),)
        )
        return (await self._backend.write(batch)).applied

    async def tenant_of_certificate(self, cert_sha256: str) -> str | None:
        row = await self._backend.read_row(CLIENT_CERTIFICATES.partition(PLATFORM_SCOPE), (cert_sha256,))
        return row.as_text("tenant_id") if row is not None else None


def _next(after: Key | None) -> str | None:
    return str(after[0]) if after else None


def _stamp(tenant: Tenant, version: int, now_ms: int) -> Tenant:
    created = tenant.create_time_ms or now_ms
    return Tenant(
        tenant.tenant_id,
        tenant.display_name,
        tenant.kind,
        tenant.products,
        tenant.quota,
        tenant.state,
        tenant.disabled_reason,
        created,
        now_ms,
        version,
    )


def _tenant_values(tenant: Tenant) -> dict[str, Value]:
    return {
        "display_name": tenant.display_name,
        "kind": tenant.kind.value,
        "products": ",".join(sorted(p.value for p in tenant.products)),
        "requests_per_s": tenant.quota.requests_per_s,
        "burst_requests": tenant.quota.burst_requests,
        "concurrent_calls_max": tenant.quota.concurrent_calls_max,
        "state": tenant.state.value,
        "disabled_reason": tenant.disabled_reason,
        "create_time_ms": tenant.create_time_ms,
        "update_time_ms": tenant.update_time_ms,
        "version": tenant.version,
    }


def _tenant_from_row(row: Row) -> Tenant:
    products = row.as_text("products")
    quota = Quota(
        row.as_int("requests_per_s"), row.as_int("burst_requests"), row.as_int("concurrent_calls_max")
    )
    return Tenant(
        tenant_id=row.as_text("tenant_id"),
        display_name=row.as_text("display_name"),
        kind=TenantKind(row.as_text("kind")),
        products=frozenset(Product(p) for p in products.split(",") if p),
        quota=quota,
        state=TenantState(row.as_text("state")),
        disabled_reason=row.as_text("disabled_reason"),
        create_time_ms=row.as_int("create_time_ms"),
        update_time_ms=row.as_int("update_time_ms"),
        version=row.as_int("version"),
    )


def _key_values(record: ApiKeyRecord) -> dict[str, Value]:
    return {
        "display_name": record.display_name,
        "secret_sha256": record.secret_sha256,
        "state": record.state.value,
        "create_time_ms": record.create_time_ms,
        "revoke_time_ms": record.revoke_time_ms,
        "request_id": record.request_id,
    }


def _key_from_row(tenant_id: str, row: Row) -> ApiKeyRecord:
    return ApiKeyRecord(
        tenant_id=tenant_id,
        key_id=row.as_text("key_id"),
        display_name=row.as_text("display_name"),
        secret_sha256=row.as_text("secret_sha256"),
        state=KeyState(row.as_text("state")),
        create_time_ms=row.as_int("create_time_ms"),
        revoke_time_ms=row.as_int("revoke_time_ms"),
        request_id=row.as_text("request_id"),
    )
