"""The tenant catalogue: one TOML file per partner institution under `tenants/`, validated on load.

Files seed the store: a tenant the store does not know yet is created from its file, with its API keys
and client certificate bindings. After that the store is the truth and TenantAdmin changes it; editing a
file does not overwrite a seeded tenant.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jubao_server import limits
from jubao_server.tenancy.model import TENANT_ID_PATTERN, Product, Quota, Tenant, TenantKind

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CatalogueError(Exception):
    """A catalogue file is malformed; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuotaFile(_Strict):
    requests_per_s: int = Field(gt=0, le=limits.quota_requests_per_s_max)
    burst_requests: int = Field(gt=0, le=limits.quota_burst_requests_max)
    concurrent_calls_max: int = Field(gt=0, le=limits.quota_concurrent_calls_max)


class ApiKeyFile(_Strict):
    key_id: str = Field(pattern=r"^[0-9a-f]{12}$")
    display_name: str = Field(min_length=1, max_length=limits.display_name_length_max)
    secret_sha256: str = Field(pattern=_HEX64.pattern)


class ClientCertificateFile(_Strict):
    # SHA-256 of the DER certificate, lower-case hex (`openssl x509 -noout -fingerprint -sha256`).
    sha256: str

    @field_validator("sha256", mode="before")
    @classmethod
    def _normalise(cls, value: object) -> object:
        return value.replace(":", "").lower() if isinstance(value, str) else value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _HEX64.match(value):
            raise ValueError("must be a SHA-256 fingerprint (64 hex digits)")
        return value


class TenantFile(_Strict):
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    display_name: str = Field(min_length=1, max_length=limits.display_name_length_max)
    kind: TenantKind
    products: list[Product] = Field(default_factory=list)
    quota: QuotaFile
    api_keys: list[ApiKeyFile] = Field(default_factory=list, max_length=limits.api_keys_per_tenant_max)
    client_certificates: list[ClientCertificateFile] = Field(default_factory=list, max_length=16)


@dataclasses.dataclass(frozen=True)
class CatalogueEntry:
    path: Path
    tenant: Tenant
    api_keys: tuple[ApiKeyFile, ...]
    certificate_sha256s: tuple[str, ...]


def load_catalogue(directory: Path) -> list[CatalogueEntry]:
    """Every `*.toml` in `directory`, validated; raise `CatalogueError` on the first bad file."""
    if not directory.is_dir():
        raise CatalogueError(f"tenant catalogue {directory} is not a directory")
    paths = sorted(directory.glob("*.toml"))
    if len(paths) > limits.catalogue_files_max:
        raise CatalogueError(f"{directory}: more than {limits.catalogue_files_max} tenant files")
    entries = [load_file(p) for p in paths]
    _check_unique_keys(entries)
    return entries


def load_file(path: Path) -> CatalogueEntry:
    if path.stat().st_size > limits.catalogue_file_size_max_bytes:
        raise CatalogueError(f"{path}: larger than {limits.catalogue_file_size_max_bytes} bytes")
    try:
        parsed = TenantFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as error:
        raise CatalogueError(f"{path}: not valid TOML: {error}") from None
    except ValidationError as error:
        raise CatalogueError(_describe(path, error)) from None
    if path.stem != parsed.tenant_id:
        raise CatalogueError(f"{path}: tenant_id {parsed.tenant_id!r} must match the file name")
    return CatalogueEntry(
        path, _tenant(parsed), tuple(parsed.api_keys), tuple(c.sha256 for c in parsed.client_certificates)
    )


def _tenant(parsed: TenantFile) -> Tenant:
    quota = Quota(parsed.quota.requests_per_s, parsed.quota.burst_requests, parsed.quota.concurrent_calls_max)
    return Tenant(parsed.tenant_id, parsed.display_name, parsed.kind, frozenset(parsed.products), quota)


def _describe(path: Path, error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in item['loc']) or '(file)'}: {item['msg']}" for item in error.errors()
    ]
    return f"{path}: " + "; ".join(problems)


def _check_unique_keys(entries: list[CatalogueEntry]) -> None:
    seen: dict[str, Path] = {}
    for entry in entries:
        for value in [k.key_id for k in entry.api_keys] + list(entry.certificate_sha256s):
            if value in seen:
                raise CatalogueError(f"{entry.path}: credential {value} also appears in {seen[value]}")
            seen[value] = entry.path
