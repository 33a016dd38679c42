"""Conversions between the tenancy model and the jubao.admin.v1 messages, with field validation."""

from __future__ import annotations

from jubao.admin.v1 import tenant_admin_pb2 as pb
from jubao.reasons import FieldViolation

from jubao_server.errors import invalid_fields
from jubao_server.platform.timestamps import timestamp
from jubao_server.tenancy.model import (
    ApiKeyRecord,
    KeyState,
    Product,
    Quota,
    Tenant,
    TenantKind,
    TenantState,
    display_name_violations,
    tenant_id_violations,
)

DEFAULT_QUOTA = Quota(requests_per_s=100, burst_requests=200, concurrent_calls_max=32)

_KIND_TO_PB = {
    TenantKind.BANK: pb.TENANT_KIND_BANK,
    TenantKind.FUND_HOUSE: pb.TENANT_KIND_FUND_HOUSE,
    TenantKind.PLATFORM: pb.TENANT_KIND_PLATFORM,
    TenantKind.OPERATOR: pb.TENANT_KIND_OPERATOR,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_PRODUCT_TO_PB = {
    Product.PAYMENTS: pb.PRODUCT_PAYMENTS,
    Product.FUND_TA: pb.PRODUCT_FUND_TA,
    Product.COCREATION: pb.PRODUCT_COCREATION,
}
_PRODUCT_FROM_PB = {v: k for k, v in _PRODUCT_TO_PB.items()}
_STATE_TO_PB = {TenantState.ACTIVE: pb.TENANT_STATE_ACTIVE, TenantState.DISABLED: pb.TENANT_STATE_DISABLED}
_KEY_STATE_TO_PB = {KeyState.ACTIVE: pb.API_KEY_STATE_ACTIVE, KeyState.REVOKED: pb.API_KEY_STATE_REVOKED}


def tenant_to_pb(tenant: Tenant) -> pb.Tenant:
    return pb.Tenant(
        tenant_id=tenant.tenant_id,
        display_name=tenant.display_name,
        kind=_KIND_TO_PB[tenant.kind],
        products=sorted(_PRODUCT_TO_PB[p] for p in tenant.products),
        quota=quota_to_pb(tenant.quota),
        state=_STATE_TO_PB[tenant.state],
        disabled_reason=tenant.disabled_reason,
        create_time=timestamp(tenant.create_time_ms),
        update_time=timestamp(tenant.update_time_ms),
        version=tenant.version,
    )


def quota_to_pb(quota: Quota) -> pb.Quota:
    return pb.Quota(
        requests_per_s=quota.requests_per_s,
        burst_requests=quota.burst_requests,
        concurrent_calls_max=quota.concurrent_calls_max,
    )


def key_to_pb(record: ApiKeyRecord) -> pb.ApiKey:
    key = pb.ApiKey(
        tenant_id=record.tenant_id,
        key_id=record.key_id,
        display_name=record.display_name,
        state=_KEY_STATE_TO_PB[record.state],
        create_time=timestamp(record.create_time_ms),
    )
    if record.revoke_time_ms:
        key.revoke_time.CopyFrom(timestamp(record.revoke_time_ms))
    return key


def quota_of(message: pb.Quota) -> Quota:
    return Quota(message.requests_per_s, message.burst_requests, message.concurrent_calls_max)


def quota_from_pb(message: pb.Quota, field: str) -> Quota:
    quota = quota_of(message)
    violations = quota.violations(field)
    if violations:
        raise invalid_fields(tuple(violations))
    return quota


def new_tenant_from_pb(message: pb.Tenant) -> Tenant:
    """Validate a CreateTenant body; server-owned fields (state, times, version) are ignored and a
    missing quota gets `DEFAULT_QUOTA`."""
    violations = tenant_id_violations("tenant.tenant_id", message.tenant_id)
    violations += display_name_violations("tenant.display_name", message.display_name)
    if message.kind not in _KIND_FROM_PB:
        violations.append(FieldViolation("tenant.kind", "must be BANK, FUND_HOUSE, PLATFORM or OPERATOR"))
    if any(p not in _PRODUCT_FROM_PB for p in message.products):
        violations.append(FieldViolation("tenant.products", "must be PAYMENTS, FUND_TA or COCREATION"))
    quota = quota_of(message.quota) if message.HasField("quota") else DEFAULT_QUOTA
    violations += quota.violations("tenant.quota")
    if violations:
        raise invalid_fields(tuple(violations))
    return Tenant(
        tenant_id=message.tenant_id,
        display_name=message.display_name,
        kind=_KIND_FROM_PB[message.kind],
        products=frozenset(_PRODUCT_FROM_PB[p] for p in message.products),
        quota=quota,
    )
