"""Seed the store from the tenant catalogue: create what the store lacks, never overwrite."""

from __future__ import annotations

import dataclasses

import structlog

from jubao_server.clock import Clock
from jubao_server.tenancy.catalogue import CatalogueEntry
from jubao_server.tenancy.model import ApiKeyRecord, KeyState
from jubao_server.tenancy.store import TenantStore

log = structlog.get_logger("jubao.tenancy")


@dataclasses.dataclass
class SeedReport:
    tenants_created: int = 0
    keys_created: int = 0
    certificates_bound: int = 0


async def seed_catalogue(store: TenantStore, entries: list[CatalogueEntry], clock: Clock) -> SeedReport:
    report = SeedReport()
    for entry in entries:
        if await store.get_tenant(entry.tenant.tenant_id) is None and await store.create_tenant(entry.tenant):
            report.tenants_created += 1
        for key in entry.api_keys:
            record = ApiKeyRecord(
                entry.tenant.tenant_id,
                key.key_id,
                key.display_name,
                key.secret_sha256,
                KeyState.ACTIVE,
                clock.wall_ms(),
            )
            report.keys_created += await store.insert_key(record)
        for fingerprint in entry.certificate_sha256s:
            report.certificates_bound += await store.bind_certificate(fingerprint, entry.tenant.tenant_id)
    log.info("catalogue seeded", files=len(entries), **dataclasses.asdict(report))
    return report
