"""TenantAdmin end to end: validation, idempotency, paging, persistence across a restart."""

from __future__ import annotations

from pathlib import Path

import grpc
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2

from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer, settings_for, start


def new_tenant(tenant_id: str, rate: int = 100) -> pb.Tenant:
    return pb.Tenant(
        tenant_id=tenant_id,
        display_name=f"Tenant {tenant_id}",
        kind=pb.TENANT_KIND_BANK,
        products=[pb.PRODUCT_PAYMENTS],
        quota=pb.Quota(requests_per_s=rate, burst_requests=rate, concurrent_calls_max=16),
    )


async def test_create_get_and_replay(running: Running, keys: dict[str, str]) -> None:
    operator = bearer(keys["demo-operator"])
    request = pb.CreateTenantRequest(request_id="create-1", tenant=new_tenant("acme-bank"))
    first = await running.admin.CreateTenant(request, metadata=operator)
    assert first.tenant.state == pb.TENANT_STATE_ACTIVE and first.tenant.version == 1
    again = await running.admin.CreateTenant(request, metadata=operator)
    assert again == first

    other = pb.CreateTenantRequest(request_id="create-1", tenant=new_tenant("other-bank"))
    await expect_error(
        running.admin.CreateTenant(other, metadata=operator),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.REQUEST_ID_REUSED,
    )
    await expect_error(
        running.admin.GetTenant(pb.GetTenantRequest(tenant_id="other-bank"), metadata=operator),
        grpc.StatusCode.NOT_FOUND,
        Reason.TENANT_NOT_FOUND,
    )

    duplicate = pb.CreateTenantRequest(request_id="create-2", tenant=new_tenant("acme-bank"))
    await expect_error(
        running.admin.CreateTenant(duplicate, metadata=operator),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.TENANT_EXISTS,
    )
    got = await running.admin.GetTenant(pb.GetTenantRequest(tenant_id="acme-bank"), metadata=operator)
    assert got.tenant == first.tenant


async def test_invalid_tenant_is_rejected_with_field_violations_and_writes_nothing(
    running: Running, keys: dict[str, str]
) -> None:
    operator = bearer(keys["demo-operator"])
    bad = new_tenant("Bad_Id")
    bad.display_name = ""
    bad.quota.requests_per_s = 0
    error = await expect_error(
        running.admin.CreateTenant(pb.CreateTenantRequest(tenant=bad), metadata=operator),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_ARGUMENT,
    )
    fields = {v.field for v in error.field_violations}
    assert fields == {"tenant.tenant_id", "tenant.display_name", "tenant.quota.requests_per_s"}
    listed = await running.admin.ListTenants(pb.ListTenantsRequest(page_size=500), metadata=operator)
    assert sorted(t.tenant_id for t in listed.tenants) == [
        "demo-bank",
        "demo-fund",
        "demo-insurer",
        "demo-operator",
        "demo-platform",
    ]


async def test_list_pages_through_every_tenant(running: Running, keys: dict[str, str]) -> None:
    operator = bearer(keys["demo-operator"])
    for index in range(7):
        await running.admin.CreateTenant(
            pb.CreateTenantRequest(tenant=new_tenant(f"bank-{index:02d}")), metadata=operator
        )
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await running.admin.ListTenants(
            pb.ListTenantsRequest(page_size=3, page_token=token), metadata=operator
        )
        assert len(page.tenants) <= 3
        seen += [t.tenant_id for t in page.tenants]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(seen) and len(seen) == 12
    await expect_error(
        running.admin.ListTenants(pb.ListTenantsRequest(page_token="garbage"), metadata=operator),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_PAGE_TOKEN,
    )


async def test_issue_key_replay_hides_the_secret(running: Running, keys: dict[str, str]) -> None:
    operator = bearer(keys["demo-operator"])
    request = pb.IssueApiKeyRequest(request_id="issue-1", tenant_id="demo-bank", display_name="batch job")
    first = await running.admin.IssueApiKey(request, metadata=operator)
    assert first.secret.startswith("jbk.demo-bank.")
    replay = await running.admin.IssueApiKey(request, metadata=operator)
    assert replay.api_key == first.api_key and replay.secret == ""
    listed = await running.admin.ListApiKeys(pb.ListApiKeysRequest(tenant_id="demo-bank"), metadata=operator)
    assert sorted(k.key_id for k in listed.api_keys) == sorted(["0000000000b1", first.api_key.key_id])


async def test_changes_survive_a_restart(tmp_path: Path, keys: dict[str, str]) -> None:
    settings = settings_for(tmp_path / "jubao.db")
    operator = bearer(keys["demo-operator"])
    first = await start(settings)
    try:
        await first.admin.CreateTenant(
            pb.CreateTenantRequest(tenant=new_tenant("kept-bank")), metadata=operator
        )
        issued = await first.admin.IssueApiKey(
            pb.IssueApiKeyRequest(tenant_id="kept-bank"), metadata=operator
        )
        quota = pb.Quota(requests_per_s=7, burst_requests=9, concurrent_calls_max=3)
        await first.admin.UpdateTenantQuota(
            pb.UpdateTenantQuotaRequest(tenant_id="kept-bank", quota=quota), metadata=operator
        )
    finally:
        await first.close()
    second = await start(settings)
    try:
        tenant = (
            await second.admin.GetTenant(pb.GetTenantRequest(tenant_id="kept-bank"), metadata=operator)
        ).tenant
        assert tenant.quota == quota and tenant.version == 2
        caller = await second.meta.GetCaller(meta_pb2.GetCallerRequest(), metadata=bearer(issued.secret))
        assert caller.tenant_id == "kept-bank"
    finally:
        await second.close()


async def test_every_mutation_retried_after_the_world_changed_gets_its_first_answer(
    running: Running, keys: dict[str, str]
) -> None:
    """Each TenantAdmin mutation is applied, then something changes what it would do now (the tenant is
    disabled or enabled again, its quota or key changes), then the same request is sent again: the
    retry gets the first response and changes nothing."""
    operator = bearer(keys["demo-operator"])
    admin = running.admin
    create = pb.CreateTenantRequest(request_id="c-1", tenant=new_tenant("acme-bank"))
    disable = pb.DisableTenantRequest(request_id="d-1", tenant_id="acme-bank", reason="audit")
    enable = pb.EnableTenantRequest(request_id="e-1", tenant_id="acme-bank")
    quota = pb.UpdateTenantQuotaRequest(
        request_id="q-1",
        tenant_id="acme-bank",
        quota=pb.Quota(requests_per_s=5, burst_requests=5, concurrent_calls_max=1),
    )
    issue = pb.IssueApiKeyRequest(request_id="i-1", tenant_id="acme-bank")
    created = await admin.CreateTenant(create, metadata=operator)
    disabled = await admin.DisableTenant(disable, metadata=operator)
    enabled = await admin.EnableTenant(enable, metadata=operator)
    quoted = await admin.UpdateTenantQuota(quota, metadata=operator)
    issued = await admin.IssueApiKey(issue, metadata=operator)
    revoke = pb.RevokeApiKeyRequest(request_id="r-1", tenant_id="acme-bank", key_id=issued.api_key.key_id)
    revoked = await admin.RevokeApiKey(revoke, metadata=operator)
    await admin.DisableTenant(
        pb.DisableTenantRequest(request_id="d-2", tenant_id="acme-bank"), metadata=operator
    )
    other_quota = pb.Quota(requests_per_s=7, burst_requests=7, concurrent_calls_max=2)
    await admin.UpdateTenantQuota(
        pb.UpdateTenantQuotaRequest(request_id="q-2", tenant_id="acme-bank", quota=other_quota),
        metadata=operator,
    )
    now = (await admin.GetTenant(pb.GetTenantRequest(tenant_id="acme-bank"), metadata=operator)).tenant

    assert await admin.CreateTenant(create, metadata=operator) == created
    assert await admin.DisableTenant(disable, metadata=operator) == disabled
    assert await admin.EnableTenant(enable, metadata=operator) == enabled
    assert await admin.UpdateTenantQuota(quota, metadata=operator) == quoted
    replayed = await admin.IssueApiKey(issue, metadata=operator)
    assert replayed.api_key == issued.api_key and not replayed.secret
    assert await admin.RevokeApiKey(revoke, metadata=operator) == revoked
    assert (
        await admin.GetTenant(pb.GetTenantRequest(tenant_id="acme-bank"), metadata=operator)
    ).tenant == now
    keys_now = await admin.ListApiKeys(pb.ListApiKeysRequest(tenant_id="acme-bank"), metadata=operator)
    assert [k.key_id for k in keys_now.api_keys] == [issued.api_key.key_id]
