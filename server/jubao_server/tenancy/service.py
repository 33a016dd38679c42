"""jubao.admin.v1.TenantAdmin: operators manage tenants, keys and quotas. The pipeline has already
checked that the caller is an operator."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc
from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.admin.v1 import tenant_admin_pb2_grpc as pb_grpc
from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.clock import Clock
from jubao_server.errors import already_exists, echo, invalid, invalid_fields, not_found, resource_exhausted
from jubao_server.platform.context import current_caller
from jubao_server.platform.idempotency import Claim, RequestLog
from jubao_server.platform.paging import PageTokens, page_size
from jubao_server.tenancy.auth import Authenticator
from jubao_server.tenancy.convert import key_to_pb, new_tenant_from_pb, quota_from_pb, tenant_to_pb
from jubao_server.tenancy.keys import new_key, secret_sha256
from jubao_server.tenancy.model import (
    ApiKeyRecord,
    KeyState,
    Tenant,
    TenantState,
    display_name_violations,
    tenant_id_violations,
)
from jubao_server.tenancy.store import TenantStore

Context = grpc.aio.ServicerContext[object, object]


class TenantAdminService(pb_grpc.TenantAdminServicer):
    def __init__(
        self,
        store: TenantStore,
        request_log: RequestLog,
        authenticator: Authenticator,
        pages: PageTokens,
        clock: Clock,
    ) -> None:
        self._store = store
        self._log = request_log
        self._auth = authenticator
        self._pages = pages
        self._clock = clock

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: Context
    ) -> pb.CreateTenantResponse:
        tenant = new_tenant_from_pb(request.tenant)

        async def apply(claim: Claim) -> pb.CreateTenantResponse:
            created = await self._store.create_tenant(tenant) or await self._created_by(claim, tenant)
            if created is None:
                raise already_exists(
                    Reason.TENANT_EXISTS, f"tenant {tenant.tenant_id} exists", tenant_id=tenant.tenant_id
                )
            return pb.CreateTenantResponse(tenant=tenant_to_pb(created))

        return await self._log.run(_scope(), "CreateTenant", request, pb.CreateTenantResponse, apply)

    async def GetTenant(self, request: pb.GetTenantRequest, context: Context) -> pb.GetTenantResponse:
        return pb.GetTenantResponse(tenant=tenant_to_pb(await self._existing(request.tenant_id)))

    async def ListTenants(self, request: pb.ListTenantsRequest, context: Context) -> pb.ListTenantsResponse:
        page = self._pages.query(_scope(), request)
        tenants, next_after = await self._store.list_tenants(page.start(), page_size(request.page_size))
        return pb.ListTenantsResponse(
            tenants=[tenant_to_pb(t) for t in tenants], next_page_token=page.next(next_after)
        )

    async def DisableTenant(
        self, request: pb.DisableTenantRequest, context: Context
    ) -> pb.DisableTenantResponse:
        if len(request.reason) > limits.display_name_length_max:
            raise invalid("reason", f"at most {limits.display_name_length_max} characters")

        async def apply(_: Claim) -> pb.DisableTenantResponse:
            tenant = await self._update(
                request.tenant_id,
                lambda t: dataclasses.replace(t, state=TenantState.DISABLED, disabled_reason=request.reason),
            )
            return pb.DisableTenantResponse(tenant=tenant_to_pb(tenant))

        return await self._log.run(_scope(), "DisableTenant", request, pb.DisableTenantResponse, apply)

    async def EnableTenant(
        self, request: pb.EnableTenantRequest, context: Context
    ) -> pb.EnableTenantResponse:
        async def apply(_: Claim) -> pb.EnableTenantResponse:
            tenant = await self._update(
                request.tenant_id,
                lambda t: dataclasses.replace(t, state=TenantState.ACTIVE, disabled_reason=""),
            )
            return pb.EnableTenantResponse(tenant=tenant_to_pb(tenant))

        return await self._log.run(_scope(), "EnableTenant", request, pb.EnableTenantResponse, apply)

    async def UpdateTenantQuota(
        self, request: pb.UpdateTenantQuotaRequest, context: Context
    ) -> pb.UpdateTenantQuotaResponse:
        quota = quota_from_pb(request.quota, "quota")

        async def apply(_: Claim) -> pb.UpdateTenantQuotaResponse:
            tenant = await self._update(request.tenant_id, lambda t: dataclasses.replace(t, quota=quota))
            return pb.UpdateTenantQuotaResponse(tenant=tenant_to_pb(tenant))

        return await self._log.run(
            _scope(), "UpdateTenantQuota", request, pb.UpdateTenantQuotaResponse, apply
        )

    async def IssueApiKey(self, request: pb.IssueApiKeyRequest, context: Context) -> pb.IssueApiKeyResponse:
        name = request.display_name or "api key"
        violations = display_name_violations("display_name", name)
        if violations:
            raise invalid_fields(tuple(violations))

        async def apply(_: Claim) -> pb.IssueApiKeyResponse:
            await self._existing(request.tenant_id)
            earlier = await self._store.find_key_by_request(request.tenant_id, request.request_id)
            if earlier is not None:
                return pb.IssueApiKeyResponse(api_key=key_to_pb(earlier))
            return await self._issue(request.tenant_id, name, request.request_id)

        return await self._log.run(
            _scope(), "IssueApiKey", request, pb.IssueApiKeyResponse, apply, redact=_without_secret
        )

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: Context
    ) -> pb.RevokeApiKeyResponse:
        async def apply(_: Claim) -> pb.RevokeApiKeyResponse:
            await self._existing(request.tenant_id)
            record = await self._store.revoke_key(request.tenant_id, request.key_id)
            if record is None:
                raise not_found(
                    Reason.API_KEY_NOT_FOUND, f"tenant {request.tenant_id} has no key {echo(request.key_id)}"
                )
            self._auth.forget_tenant(request.tenant_id)
            return pb.RevokeApiKeyResponse(api_key=key_to_pb(record))

        return await self._log.run(_scope(), "RevokeApiKey", request, pb.RevokeApiKeyResponse, apply)

    async def ListApiKeys(self, request: pb.ListApiKeysRequest, context: Context) -> pb.ListApiKeysResponse:
        await self._existing(request.tenant_id)
        page = self._pages.query(_scope(), request)
        keys, next_after = await self._store.list_keys(
            request.tenant_id, page.start(), page_size(request.page_size)
        )
        return pb.ListApiKeysResponse(
            api_keys=[key_to_pb(k) for k in keys], next_page_token=page.next(next_after)
        )

    async def _issue(self, tenant_id: str, name: str, request_id: str) -> pb.IssueApiKeyResponse:
        if await self._store.count_keys(tenant_id) >= limits.api_keys_per_tenant_max:
            raise resource_exhausted(
                Reason.API_KEY_LIMIT, f"tenant {tenant_id} has {limits.api_keys_per_tenant_max} keys", None
            )
        key_id, secret = new_key(tenant_id)
        record = ApiKeyRecord(
            tenant_id,
            key_id,
            name,
            secret_sha256(secret),
            KeyState.ACTIVE,
            self._clock.wall_ms(),
            0,
            request_id,
        )
        await self._store.insert_key(record)
        return pb.IssueApiKeyResponse(api_key=key_to_pb(record), secret=secret)

    async def _created_by(self, claim: Claim, tenant: Tenant) -> Tenant | None:
        """The tenant a retry's first attempt created: the request was claimed first, so a tenant of its
        id created at or after that claim is the first attempt's (which stopped before its response was
        kept)."""
        if claim.fresh:
            return None
        existing = await self._store.get_tenant(tenant.tenant_id)
        return existing if existing is not None and existing.create_time_ms >= claim.claimed_ms else None

    async def _existing(self, tenant_id: str) -> Tenant:
        violations = tenant_id_violations("tenant_id", tenant_id)
        if violations:
            raise invalid_fields(tuple(violations))
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise not_found(Reason.TENANT_NOT_FOUND, f"no tenant {tenant_id}", tenant_id=tenant_id)
        return tenant

    async def _update(self, tenant_id: str, change: Callable[[Tenant], Tenant]) -> Tenant:
        await self._existing(tenant_id)
        tenant = await self._store.update_tenant(tenant_id, change)
        if tenant is None:
            raise not_found(Reason.TENANT_NOT_FOUND, f"no tenant {tenant_id}", tenant_id=tenant_id)
        self._auth.forget_tenant(tenant_id)
        return tenant


def _scope() -> str:
    return current_caller().tenant.tenant_id


def _without_secret(response: pb.IssueApiKeyResponse) -> pb.IssueApiKeyResponse:
    return pb.IssueApiKeyResponse(api_key=response.api_key)
