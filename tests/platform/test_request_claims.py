"""One request-id mechanism for every product (platform/idempotency.py): claims kept before it still
answer their retries, and a CreateTenant whose response was never kept (the process stopped between the
change and the response) answers its retry with the tenant it created, not TENANT_EXISTS."""

from __future__ import annotations

import grpc
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.errors import Reason
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.platform.idempotency import REQUEST_LOG, RequestLog, body_sha256
from jubao_server.storage.contract import Batch, Put, Value
from jubao_server.tenancy.convert import new_tenant_from_pb
from jubao_server.tenancy.store import TenantStore

from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer
from tests.platform.test_admin import new_tenant

OPERATOR = "demo-operator"


async def test_a_request_logged_before_the_upgrade_is_replayed(
    running: Running, keys: dict[str, str]
) -> None:
    """A row of `request_log` as the request log before the claims wrote it (the whole row at once,
    after the change) answers its retry with the response it kept, and another body is refused."""
    operator = bearer(keys[OPERATOR])
    request = pb.CreateTenantRequest(request_id="before-upgrade", tenant=new_tenant("kept-bank"))
    kept = pb.CreateTenantResponse(tenant=pb.Tenant(tenant_id="kept-bank", display_name="as kept"))
    values: dict[str, Value] = {
        "method": "CreateTenant",
        "body_sha256": body_sha256(request),
        "response": kept.SerializeToString(),
        "create_time_ms": SYSTEM_CLOCK.wall_ms() - 3_600_000,
    }
    partition = REQUEST_LOG.partition(OPERATOR, request.request_id)
    await running.server.backend.write(Batch(partition, (Put((), values, ttl_s=3600),)))
    assert await running.admin.CreateTenant(request, metadata=operator) == kept
    other = pb.CreateTenantRequest(request_id="before-upgrade", tenant=new_tenant("other-bank"))
    await expect_error(
        running.admin.CreateTenant(other, metadata=operator),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.REQUEST_ID_REUSED,
    )


async def test_a_create_whose_response_was_lost_answers_its_retry(
    running: Running, keys: dict[str, str]
) -> None:
    """The first attempt claimed its request id and created the tenant, then stopped before its response
    was kept: the retry gets the tenant. Another request creating the same tenant still gets
    TENANT_EXISTS."""
    operator = bearer(keys[OPERATOR])
    backend = running.server.backend
    request = pb.CreateTenantRequest(request_id="create-then-crash", tenant=new_tenant("crashy-bank"))
    claims = RequestLog(backend, SYSTEM_CLOCK).claims
    claim = await claims.claim(OPERATOR, request.request_id, "CreateTenant", body_sha256(request))
    assert claim.fresh
    created = await TenantStore(backend, SYSTEM_CLOCK).create_tenant(new_tenant_from_pb(request.tenant))
    assert created is not None
    retried = await running.admin.CreateTenant(request, metadata=operator)
    assert (retried.tenant.tenant_id, retried.tenant.version) == ("crashy-bank", 1)
    assert await running.admin.CreateTenant(request, metadata=operator) == retried
    another = pb.CreateTenantRequest(request_id="create-again", tenant=new_tenant("crashy-bank"))
    await expect_error(
        running.admin.CreateTenant(another, metadata=operator),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.TENANT_EXISTS,
    )
