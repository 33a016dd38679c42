"""The payments ledger's data migrations (`platform/data_migrations.py`), in order."""

from __future__ import annotations

from typing import Final

from jubao_server import limits
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.invariants import InvariantViolation
from jubao_server.payments.tables import CLAIMS_MOVED, TENANT_CONFIG
from jubao_server.platform.data_migrations import DataMigration
from jubao_server.storage.contract import PLATFORM_SCOPE, Batch, Put, RowQuery, StorageBackend, read_all
from jubao_server.tenancy.tables import TENANTS


async def mark_claims_moved(backend: StorageBackend) -> int:
    """Every tenant with a ledger then gets the time its claims moved to `payments_claims` (now,
    `CLAIMS_MOVED`): its claims kept in `payments_requests` are looked for there until they expire
    (`Ledger._earlier_claims_until_ms`). A tenant marked already keeps its mark; a tenant without a
    ledger gets none (it claimed nothing that moved money). The marks it wrote."""
    written = 0
    now_ms = SYSTEM_CLOCK.wall_ms()
    tenants = RowQuery(TENANTS.partition(PLATFORM_SCOPE), limit=limits.storage_page_rows_max)
    async for tenant in read_all(backend, tenants, limits.tenant_pages_max, _too_many_tenants):
        tenant_id = tenant.as_text("tenant_id")
        moved = CLAIMS_MOVED.partition(tenant_id)
        if await backend.read_row(TENANT_CONFIG.partition(tenant_id)) is None:
            continue
        if await backend.read_row(moved) is None:
            await backend.write(Batch(moved, (Put((), {"since_ms": now_ms}),)))
            written += 1
    return written


def _too_many_tenants() -> InvariantViolation:
    return InvariantViolation(f"more than {limits.tenant_pages_max} pages of tenants")


DATA_MIGRATIONS: Final = (DataMigration("0001_payments_claim_buckets", mark_claims_moved),)
