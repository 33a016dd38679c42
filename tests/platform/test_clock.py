"""The composition root's clock is the one the server's times come from: a server started on a clock a
year ahead stamps what it creates a year ahead."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao_server.clock import SYSTEM_CLOCK

from tests.platform.harness import bearer, demo_keys, settings_for, start
from tests.platform.test_admin import new_tenant

YEAR_MS: Final = 365 * 24 * 3600 * 1000
SLACK_MS: Final = 60_000


class YearAhead:
    """The machine's clock, its wall time a year ahead."""

    def wall_ms(self) -> int:
        return SYSTEM_CLOCK.wall_ms() + YEAR_MS

    def monotonic_s(self) -> float:
        return SYSTEM_CLOCK.monotonic_s()

    async def sleep(self, delay_s: float) -> None:
        await SYSTEM_CLOCK.sleep(delay_s)


async def test_tenants_and_keys_are_stamped_by_the_roots_clock(tmp_path: Path) -> None:
    running = await start(settings_for(tmp_path / "jubao.db"), clock=YearAhead())
    try:
        operator = bearer(demo_keys()["demo-operator"])
        request = pb.CreateTenantRequest(request_id="ahead-1", tenant=new_tenant("ahead-bank"))
        created = (await running.admin.CreateTenant(request, metadata=operator)).tenant
        issued = await running.admin.IssueApiKey(
            pb.IssueApiKeyRequest(tenant_id="ahead-bank"), metadata=operator
        )
        seeded = await running.admin.GetTenant(pb.GetTenantRequest(tenant_id="demo-bank"), metadata=operator)
    finally:
        await running.close()
    ahead_ms = SYSTEM_CLOCK.wall_ms() + YEAR_MS
    stamps_ms = [
        created.create_time.ToMilliseconds(),
        created.update_time.ToMilliseconds(),
        issued.api_key.create_time.ToMilliseconds(),
        seeded.tenant.create_time.ToMilliseconds(),
    ]
    assert all(ahead_ms - SLACK_MS < stamp_ms <= ahead_ms for stamp_ms in stamps_ms), stamps_ms
