"""Authentication: a credential (API key or client certificate) resolves to the calling tenant.

The tenant always comes from the credential, never from a request field. Resolutions, failures
included, are cached for `auth_cache_ttl_ms`; a change made through this process drops the affected
entries at once, so a disabled tenant or a revoked key is refused on its next call without a restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from ssl import PEM_cert_to_DER_cert
from typing import Literal

from jubao.reasons import Reason

from jubao_server import limits
from jubao_server.bounded import keep_recent
from jubao_server.clock import Clock
from jubao_server.errors import ApiError, permission_denied, unauthenticated
from jubao_server.tenancy.keys import hashes_match, parse_key
from jubao_server.tenancy.model import KeyState, Product, Tenant
from jubao_server.tenancy.store import TenantStore

AuthMethod = Literal["api_key", "mtls"]
BEARER_PREFIX = "bearer "


@dataclasses.dataclass(frozen=True)
class Caller:
    tenant: Tenant
    auth_method: AuthMethod
    key_id: str = ""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a call presented: the `authorization` header and the verified client certificate (PEM)."""

    authorization: str | None
    client_certificate_pem: bytes | None


@dataclasses.dataclass(frozen=True)
class _Entry:
    expires_s: float
    tenant_id: str
    outcome: Caller | ApiError


Lookup = Callable[[], Awaitable[Caller]]


class Authenticator:
    def __init__(self, store: TenantStore, cache_ttl_ms: int, clock: Clock) -> None:
        self._store = store
        self._ttl_s = cache_ttl_ms / 1000
        self._clock = clock
        self._cache: dict[str, _Entry] = {}

    def cached(self, credentials: Credentials) -> Caller | None:
        """The caller while a resolution of these credentials is cached (raising the UNAUTHENTICATED it
        resolved to), else None: `authenticate` then resolves them."""
        entry = self._cache.get(self._cache_key(credentials))
        if entry is None or entry.expires_s <= self._clock.monotonic_s():
            return None
        if isinstance(entry.outcome, ApiError):
            raise entry.outcome
        return entry.outcome

    async def authenticate(self, credentials: Credentials) -> Caller:
        """The caller, or raise UNAUTHENTICATED with the reason."""
        cache_key = self._cache_key(credentials)
        entry = self._cache.get(cache_key)
        if entry is None or entry.expires_s <= self._clock.monotonic_s():
            entry = await self._resolve(self._lookup(credentials))
            self._remember(cache_key, entry)
        if isinstance(entry.outcome, ApiError):
            raise entry.outcome
        return entry.outcome

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop cached resolutions of a tenant after a change to it or its keys."""
        for cache_key in [k for k, e in self._cache.items() if e.tenant_id == tenant_id]:
            del self._cache[cache_key]

    def _cache_key(self, credentials: Credentials) -> str:
        if credentials.authorization is not None:
            return "key:" + hashlib.sha256(credentials.authorization.encode()).hexdigest()
        if credentials.client_certificate_pem is not None:
            return "cert:" + certificate_sha256(credentials.client_certificate_pem)
        return "missing"

    def _lookup(self, credentials: Credentials) -> Lookup:
        header = credentials.authorization
        if header is not None:
            return lambda: self._by_api_key(header)
        if credentials.client_certificate_pem is not None:
            fingerprint = certificate_sha256(credentials.client_certificate_pem)
            return lambda: self._by_certificate(fingerprint)
        missing = unauthenticated(Reason.API_KEY_MISSING, "send 'authorization: Bearer <api-key>'")
        return lambda: _failed(missing)

    async def _resolve(self, resolve: Lookup) -> _Entry:
        expires_s = self._clock.monotonic_s() + self._ttl_s
        try:
            caller = await resolve()
        except ApiError as error:
            return _Entry(expires_s, error.metadata.get("tenant_id", ""), error)
        return _Entry(expires_s, caller.tenant.tenant_id, caller)

    def _remember(self, cache_key: str, entry: _Entry) -> None:
        if self._ttl_s <= 0:
            return
        keep_recent(self._cache, {cache_key: entry}, limits.auth_cache_entries_max)

    async def _by_api_key(self, header: str) -> Caller:
        if not header[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
            raise unauthenticated(Reason.API_KEY_INVALID, "authorization must be 'Bearer <api-key>'")
        presented = parse_key(header[len(BEARER_PREFIX) :].strip())
        if presented is None:
            raise unauthenticated(Reason.API_KEY_INVALID, "the API key is malformed")
        record = await self._store.get_key(presented.tenant_id, presented.key_id)
        if record is None or not hashes_match(record.secret_sha256, presented.secret_sha256):
            raise unauthenticated(Reason.API_KEY_INVALID, "the API key is not valid")
        if record.state is KeyState.REVOKED:
            raise _tenant_error(
                Reason.API_KEY_REVOKED, f"API key {record.key_id} was revoked", record.tenant_id
            )
        tenant = await self._active_tenant(record.tenant_id)
        return Caller(tenant, "api_key", record.key_id)

    async def _by_certificate(self, fingerprint: str) -> Caller:
        tenant_id = await self._store.tenant_of_certificate(fingerprint)
        if tenant_id is None:
            raise unauthenticated(Reason.CLIENT_CERTIFICATE_UNKNOWN, "the client certificate names no tenant")
        return Caller(await self._active_tenant(tenant_id), "mtls")

    async def _active_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self._store.get_tenant(tenant_id)
        if tenant is None:
            raise unauthenticated(Reason.API_KEY_INVALID, "the credential names no tenant")
        if not tenant.active:
            raise _tenant_error(Reason.TENANT_DISABLED, f"tenant {tenant_id} is disabled", tenant_id)
        return tenant


def require_product(caller: Caller, product: Product) -> None:
    """PERMISSION_DENIED (PRODUCT_NOT_ENABLED) unless the caller's tenant has `product` enabled."""
    tenant = caller.tenant
    if product not in tenant.products:
        raise permission_denied(
            Reason.PRODUCT_NOT_ENABLED,
            f"product {product.value} is not enabled for tenant {tenant.tenant_id}",
            product=product.value,
        )


def _tenant_error(reason: Reason, message: str, tenant_id: str) -> ApiError:
    error = unauthenticated(reason, message)
    error.metadata["tenant_id"] = tenant_id
    return error


async def _failed(error: ApiError) -> Caller:
    raise error


def certificate_sha256(pem: bytes) -> str:
    """SHA-256 of the certificate's DER bytes, as `openssl x509 -fingerprint -sha256` prints it."""
    return hashlib.sha256(PEM_cert_to_DER_cert(pem.decode())).hexdigest()
