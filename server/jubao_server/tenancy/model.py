"""Tenants and API keys as the domain sees them, and the rules their fields obey."""

from __future__ import annotations

import dataclasses
import re
from enum import StrEnum

from jubao.reasons import FieldViolation

from jubao_server import limits

TENANT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{2,39}$")


class TenantKind(StrEnum):
    BANK = "bank"
    FUND_HOUSE = "fund_house"
    PLATFORM = "platform"
    OPERATOR = "operator"


class Product(StrEnum):
    PAYMENTS = "payments"
    FUND_TA = "fund_ta"
    COCREATION = "cocreation"


class TenantState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class KeyState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclasses.dataclass(frozen=True)
class Quota:
    requests_per_s: int
    burst_requests: int
    concurrent_calls_max: int

    def violations(self, prefix: str) -> list[FieldViolation]:
        bounds = (
            ("requests_per_s", self.requests_per_s, limits.quota_requests_per_s_max),
            ("burst_requests", self.burst_requests, limits.quota_burst_requests_max),
            ("concurrent_calls_max", self.concurrent_calls_max, limits.quota_concurrent_calls_max),
        )
        return [
            FieldViolation(f"{prefix}.{name}", f"must be between 1 and {bound}")
            for name, value, bound in bounds
            if not 1 <= value <= bound
        ]


@dataclasses.dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    kind: TenantKind
    products: frozenset[Product]
    quota: Quota
    state: TenantState = TenantState.ACTIVE
    disabled_reason: str = ""
    create_time_ms: int = 0
    update_time_ms: int = 0
    version: int = 0

    @property
    def active(self) -> bool:
        return self.state is TenantState.ACTIVE


@dataclasses.dataclass(frozen=True)
class ApiKeyRecord:
    tenant_id: str
    key_id: str
    display_name: str
    secret_sha256: str
    state: KeyState
    create_time_ms: int
    revoke_time_ms: int = 0
    request_id: str = ""


def tenant_id_violations(field: str, tenant_id: str) -> list[FieldViolation]:
    if TENANT_ID_PATTERN.match(tenant_id):
        return []
    return [FieldViolation(field, "3 to 40 lower case letters, digits or '-', starting with a letter")]


def display_name_violations(field: str, name: str) -> list[FieldViolation]:
    if 0 < len(name) <= limits.display_name_length_max and name.isprintable():
        return []
    return [FieldViolation(field, f"1 to {limits.display_name_length_max} printable characters")]
