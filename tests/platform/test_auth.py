"""Authentication and authorization through the real server."""

from __future__ import annotations

import grpc
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.errors import Reason
from jubao.meta.v1 import meta_pb2

from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def test_call_without_key_is_unauthenticated_with_error_info(running: Running) -> None:
    error = await expect_error(
        running.meta.Ping(meta_pb2.PingRequest()), UNAUTHENTICATED, Reason.API_KEY_MISSING
    )
    assert "Bearer" in error.message


async def test_malformed_and_unknown_keys_are_rejected(running: Running, keys: dict[str, str]) -> None:
    for header in ("jbk.nope", "Basic abc", keys["demo-bank"] + "x", keys["demo-bank"].replace("b1.", "b2.")):
        metadata = (("authorization", header if header.startswith("Basic") else f"Bearer {header}"),)
        await expect_error(
            running.meta.Ping(meta_pb2.PingRequest(), metadata=metadata),
            UNAUTHENTICATED,
            Reason.API_KEY_INVALID,
        )


async def test_key_resolves_the_tenant(running: Running, keys: dict[str, str]) -> None:
    caller = await running.meta.GetCaller(meta_pb2.GetCallerRequest(), metadata=bearer(keys["demo-bank"]))
    assert (caller.tenant_id, caller.kind, list(caller.products)) == ("demo-bank", "bank", ["payments"])
    assert (caller.auth_method, caller.key_id) == ("api_key", "0000000000b1")


async def test_admin_is_operator_only(running: Running, keys: dict[str, str]) -> None:
    call = running.admin.ListTenants(admin_pb.ListTenantsRequest(), metadata=bearer(keys["demo-platform"]))
    await expect_error(call, grpc.StatusCode.PERMISSION_DENIED, Reason.OPERATOR_ONLY)


async def test_revoked_key_and_disabled_tenant_take_effect_without_restart(
    running: Running, keys: dict[str, str]
) -> None:
    operator = bearer(keys["demo-operator"])
    issued = await running.admin.IssueApiKey(
        admin_pb.IssueApiKeyRequest(tenant_id="demo-fund"), metadata=operator
    )
    fund = bearer(issued.secret)
    assert (await running.meta.GetCaller(meta_pb2.GetCallerRequest(), metadata=fund)).tenant_id == "demo-fund"

    revoke = admin_pb.RevokeApiKeyRequest(tenant_id="demo-fund", key_id=issued.api_key.key_id)
    await running.admin.RevokeApiKey(revoke, metadata=operator)
    await expect_error(
        running.meta.Ping(meta_pb2.PingRequest(), metadata=fund), UNAUTHENTICATED, Reason.API_KEY_REVOKED
    )

    demo_fund = bearer(keys["demo-fund"])
    await running.admin.DisableTenant(
        admin_pb.DisableTenantRequest(tenant_id="demo-fund", reason="audit"), metadata=operator
    )
    await expect_error(
        running.meta.Ping(meta_pb2.PingRequest(), metadata=demo_fund), UNAUTHENTICATED, Reason.TENANT_DISABLED
    )
    await running.admin.EnableTenant(admin_pb.EnableTenantRequest(tenant_id="demo-fund"), metadata=operator)
    await running.meta.Ping(meta_pb2.PingRequest(), metadata=demo_fund)
