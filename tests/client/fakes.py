"""A real in-process gRPC server with scripted MetaService and TenantAdmin servicers for client tests.

Every call is recorded (metadata, request_id, deadline) and may be failed by a scripted rich status.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb2
from jubao.admin.v1 import tenant_admin_pb2_grpc as admin_grpc
from jubao.errors import ERROR_DOMAIN
from jubao.meta.v1 import meta_pb2, meta_pb2_grpc
from typing_extensions import override

PAGE_SIZE = 2
CALLER = meta_pb2.GetCallerResponse(
    tenant_id="acme-bank",
    display_name="Acme Bank",
    kind="bank",
    products=["payments"],
    auth_method="api_key",
    key_id="key-1",
)


@dataclasses.dataclass(frozen=True)
class ReceivedCall:
    method: str
    metadata: dict[str, str | bytes]
    request_id: str
    time_remaining_s: float | None


class Script:
    """What the servicers saw, and the failures they still have to return (one per call, in order)."""

    def __init__(self) -> None:
        self.calls: list[ReceivedCall] = []
        self.failures: list[status_pb2.Status] = []
        self._lock = threading.Lock()

    def fail_next(self, status: status_pb2.Status, times: int = 1) -> None:
        with self._lock:
            self.failures.extend([status] * times)

    def methods(self) -> list[str]:
        return [call.method for call in self.calls]

    def receive(self, method: str, request: Message, context: grpc.ServicerContext) -> None:
        """Record the call, then abort it if a failure is scripted."""
        request_id = getattr(request, "request_id", "")
        call = ReceivedCall(method, dict(context.invocation_metadata()), request_id, context.time_remaining())
        with self._lock:
            self.calls.append(call)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort_with_status(rpc_status.to_status(failure))


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    *,
    violations: Sequence[tuple[str, str]] = (),
    retry_delay_ms: int | None = None,
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    """A `google.rpc.Status` with ErrorInfo, and BadRequest / RetryInfo when asked."""
    status = status_pb2.Status(code=code.value[0], message=message)
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata or {})
    status.details.add().Pack(info)
    if violations:
        bad_request = error_details_pb2.BadRequest()
        for field, description in violations:
            bad_request.field_violations.add(field=field, description=description)
        status.details.add().Pack(bad_request)
    if retry_delay_ms is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromMilliseconds(retry_delay_ms)
        status.details.add().Pack(retry)
    return status


class FakeMeta(meta_pb2_grpc.MetaServiceServicer):
    def __init__(self, script: Script) -> None:
        self._script = script

    @override
    def Ping(self, request: meta_pb2.PingRequest, context: grpc.ServicerContext) -> meta_pb2.PingResponse:
        self._script.receive("Ping", request, context)
        return meta_pb2.PingResponse(payload=request.payload)

    @override
    def GetCaller(
        self, request: meta_pb2.GetCallerRequest, context: grpc.ServicerContext
    ) -> meta_pb2.GetCallerResponse:
        self._script.receive("GetCaller", request, context)
        return CALLER


def sample_tenant(tenant_id: str) -> admin_pb2.Tenant:
    return admin_pb2.Tenant(
        tenant_id=tenant_id,
        display_name=f"Tenant {tenant_id}",
        kind=admin_pb2.TENANT_KIND_BANK,
        products=[admin_pb2.PRODUCT_PAYMENTS],
        quota=admin_pb2.Quota(requests_per_s=100, burst_requests=200, concurrent_calls_max=10),
        state=admin_pb2.TENANT_STATE_ACTIVE,
        version=1,
    )


class FakeTenantAdmin(admin_grpc.TenantAdminServicer):
    """Serves `tenants` (listed PAGE_SIZE per page, whatever the page size asked) and one API key each."""

    def __init__(self, script: Script, tenants: Sequence[admin_pb2.Tenant]) -> None:
        self._script = script
        self._tenants = {tenant.tenant_id: tenant for tenant in tenants}

    @override
    def CreateTenant(
        self, request: admin_pb2.CreateTenantRequest, context: grpc.ServicerContext
    ) -> admin_pb2.CreateTenantResponse:
        self._script.receive("CreateTenant", request, context)
        tenant = admin_pb2.Tenant()
        tenant.CopyFrom(request.tenant)
        tenant.state = admin_pb2.TENANT_STATE_ACTIVE
        tenant.version = 1
        return admin_pb2.CreateTenantResponse(tenant=tenant)

    @override
    def GetTenant(
        self, request: admin_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetTenantResponse:
        self._script.receive("GetTenant", request, context)
        return admin_pb2.GetTenantResponse(tenant=self._find(request.tenant_id, context))

    @override
    def ListTenants(
        self, request: admin_pb2.ListTenantsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListTenantsResponse:
        self._script.receive("ListTenants", request, context)
        offset = int(request.page_token or "0")
        tenants = list(self._tenants.values())
        end = offset + PAGE_SIZE
        return admin_pb2.ListTenantsResponse(
            tenants=tenants[offset:end], next_page_token=str(end) if end < len(tenants) else ""
        )

    @override
    def DisableTenant(
        self, request: admin_pb2.DisableTenantRequest, context: grpc.ServicerContext
    ) -> admin_pb2.DisableTenantResponse:
        self._script.receive("DisableTenant", request, context)
        tenant = self._find(request.tenant_id, context)
        tenant.state = admin_pb2.TENANT_STATE_DISABLED
        tenant.disabled_reason = request.reason
        return admin_pb2.DisableTenantResponse(tenant=tenant)

    @override
    def EnableTenant(
        self, request: admin_pb2.EnableTenantRequest, context: grpc.ServicerContext
    ) -> admin_pb2.EnableTenantResponse:
        self._script.receive("EnableTenant", request, context)
        tenant = self._find(request.tenant_id, context)
        tenant.state = admin_pb2.TENANT_STATE_ACTIVE
        tenant.ClearField("disabled_reason")
        return admin_pb2.EnableTenantResponse(tenant=tenant)

    @override
    def UpdateTenantQuota(
        self, request: admin_pb2.UpdateTenantQuotaRequest, context: grpc.ServicerContext
    ) -> admin_pb2.UpdateTenantQuotaResponse:
        self._script.receive("UpdateTenantQuota", request, context)
        tenant = self._find(request.tenant_id, context)
        tenant.quota.CopyFrom(request.quota)
        return admin_pb2.UpdateTenantQuotaResponse(tenant=tenant)

    @override
    def IssueApiKey(
        self, request: admin_pb2.IssueApiKeyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.IssueApiKeyResponse:
        self._script.receive("IssueApiKey", request, context)
        key = _api_key(self._find(request.tenant_id, context).tenant_id, request.display_name)
        return admin_pb2.IssueApiKeyResponse(api_key=key, secret="jb_secret_shown_once")

    @override
    def RevokeApiKey(
        self, request: admin_pb2.RevokeApiKeyRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RevokeApiKeyResponse:
        self._script.receive("RevokeApiKey", request, context)
        key = _api_key(self._find(request.tenant_id, context).tenant_id, "default")
        key.key_id = request.key_id
        key.state = admin_pb2.API_KEY_STATE_REVOKED
        return admin_pb2.RevokeApiKeyResponse(api_key=key)

    @override
    def ListApiKeys(
        self, request: admin_pb2.ListApiKeysRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListApiKeysResponse:
        self._script.receive("ListApiKeys", request, context)
        key = _api_key(self._find(request.tenant_id, context).tenant_id, "default")
        return admin_pb2.ListApiKeysResponse(api_keys=[key])

    def _find(self, tenant_id: str, context: grpc.ServicerContext) -> admin_pb2.Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            status = rich_status(grpc.StatusCode.NOT_FOUND, f"no tenant {tenant_id}", "TENANT_NOT_FOUND")
            context.abort_with_status(rpc_status.to_status(status))
        return tenant


def _api_key(tenant_id: str, display_name: str) -> admin_pb2.ApiKey:
    return admin_pb2.ApiKey(
        tenant_id=tenant_id, key_id="key-1", display_name=display_name, state=admin_pb2.API_KEY_STATE_ACTIVE
    )


@dataclasses.dataclass(frozen=True)
class FakeServer:
    endpoint: str
    script: Script


@contextmanager
def serve(tenants: Sequence[admin_pb2.Tenant]) -> Iterator[FakeServer]:
    """Run the fake services on 127.0.0.1 at a free port until the block ends."""
    script = Script()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    meta_pb2_grpc.add_MetaServiceServicer_to_server(FakeMeta(script), server)
    admin_grpc.add_TenantAdminServicer_to_server(FakeTenantAdmin(script, tenants), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield FakeServer(f"127.0.0.1:{port}", script)
    finally:
        server.stop(grace=None)
