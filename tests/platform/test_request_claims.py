"""One request-id mechanism for every product (platform/idempotency.py): claims kept before it still
answer their retries, and a CreateTenant whose response was never kept (the process stopped between the
change and the response) answers its retry with the tenant it created, not TENANT_EXISTS."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.errors import Reason
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.errors import ApiError
from jubao_server.platform.idempotency import REQUEST_LOG, Claim, RequestLog, body_sha256
from jubao_server.storage.contract import Batch, Put, StorageError, Value
from jubao_server.storage.factory import platform_migrations
from jubao_server.tenancy.convert import new_tenant_from_pb
from jubao_server.tenancy.store import TenantStore

from tests.backends import open_test_backend
from tests.platform.errors import expect_error
from tests.platform.harness import Running, bearer
from tests.platform.test_admin import new_tenant
from tests.sim.faults import FaultPlan

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


async def test_a_batch_of_claims_answers_as_claims_one_by_one(running: Running) -> None:
    """`claim_all` claims in one storage call what `claim` claims one by one: fresh ids, a request
    without an id, a retry (with the first answer and time), a reuse with another body."""
    claims = RequestLog(running.server.backend, SYSTEM_CLOCK).claims
    first = await claims.claim(OPERATOR, "kept", "CreateTenant", "body-1")
    await claims.answer(OPERATOR, "kept", b"first answer")
    batch = await claims.claim_all(
        OPERATOR,
        "CreateTenant",
        [("fresh", "body-2", {}), ("", "body-3", {}), ("kept", "body-1", {}), ("kept-reused", "body-4", {})],
    )
    reuse = await claims.claim_all(
        OPERATOR, "CreateTenant", [("kept-reused", "body-4", {}), ("fresh", "other", {})]
    )
    fresh, no_id, retry, reused = batch
    assert isinstance(fresh, Claim) and fresh.fresh
    assert isinstance(no_id, Claim) and no_id.fresh
    assert retry == Claim(fresh=False, answer=b"first answer", claimed_ms=first.claimed_ms)
    assert isinstance(reused, Claim) and reused.fresh
    assert reuse[0] == Claim(fresh=False, claimed_ms=reused.claimed_ms)
    assert isinstance(reuse[1], ApiError)
    assert reuse[1].reason is Reason.REQUEST_ID_REUSED


async def test_a_batch_of_claims_fails_whole_on_a_storage_error(tmp_path: Path) -> None:
    """A claim whose write failed raises for the batch, as `claim` raises; the claims written meanwhile
    are recognised by the retry of the batch."""
    faults = FaultPlan()
    backend = await open_test_backend("memory", tmp_path, faults)
    try:
        await backend.migrate([platform_migrations(backend.name)])
        claims = RequestLog(backend, SYSTEM_CLOCK).claims
        requests: list[tuple[str, str, dict[str, Value]]] = [("lost", "body-1", {}), ("kept", "body-2", {})]
        faults.storage_errors = 1
        with pytest.raises(StorageError):
            await claims.claim_all(OPERATOR, "CreateTenant", requests)
        lost, kept = await claims.claim_all(OPERATOR, "CreateTenant", requests)
        assert isinstance(lost, Claim) and lost.fresh
        assert isinstance(kept, Claim) and not kept.fresh
    finally:
        await backend.close()
