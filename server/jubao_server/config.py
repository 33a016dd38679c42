"""Server settings: defaults, overridden by a TOML file (`--config` or `JUBAO_CONFIG`), overridden by
`JUBAO_*` environment variables, nested with `__` (`JUBAO_SERVER__PORT=50052`).

`Settings` has the host's sections; the composition root derives the model of the service from it with
a section per enabled product (`with_sections`), read the same way (`[payments]` in the file,
`JUBAO_PAYMENTS__SHARD_COUNT` in the environment) and named the same way in errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jubao_server import limits
from jubao_server.bulk.config import BulkSettings
from jubao_server.invariants import ensure
from jubao_server.storage.config import StorageSettings

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsSettings(_Strict):
    """Server TLS; with `client_ca_path` set, clients must present a certificate signed by that CA and
    the certificate's SHA-256 fingerprint names the tenant (mutual TLS), on gRPC and on the bulk plane's Arrow
    Flight server alike (`bulk/peer.py`)."""

    enabled: bool = False
    cert_path: Path | None = None
    key_path: Path | None = None
    client_ca_path: Path | None = None

    @model_validator(mode="after")
    def _paths_when_enabled(self) -> TlsSettings:
        if self.enabled and (self.cert_path is None or self.key_path is None):
            raise ValueError("tls.enabled needs cert_path and key_path")
        return self


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, lt=65536)
    # The host other servers of the cluster reach this one at, for forwarded calls (default: `host`).
    advertise_host: str | None = None
    message_size_max_bytes: int = Field(4 * 1024 * 1024, gt=0, le=limits.message_size_max_bytes)
    concurrent_streams_max: int = Field(256, gt=0, le=limits.concurrent_streams_max)
    deadline_default_ms: int = Field(limits.deadline_default_ms, gt=0, le=limits.deadline_max_ms)
    deadline_max_ms: int = Field(30_000, gt=0, le=limits.deadline_max_ms)
    shutdown_grace_ms: int = Field(10_000, ge=0, le=limits.shutdown_grace_max_ms)
    tls: TlsSettings = TlsSettings()
    # gRPC server processes `jubao-server serve` runs, all on `port` (0: one per core). One by default: on
    # this machine two did fewer transfers than one (ARCHITECTURE.md, "Several processes on a machine").
    processes: int = Field(1, ge=0, le=limits.server_processes_max)
    # Set by `jubao-server serve` for each of its gRPC processes when it runs several: a port of the
    # process's own (other servers forward calls to it there) and every process's own address.
    own_port: int = Field(0, ge=0, lt=65536)
    members: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _default_within_max(self) -> ServerSettings:
        if self.deadline_default_ms > self.deadline_max_ms:
            raise ValueError("deadline_default_ms must not exceed deadline_max_ms")
        return self


class TenancySettings(_Strict):
    catalogue_dir: Path = Path("tenants")
    # Seed tenants of the catalogue files that the store does not have yet.
    seed_catalogue: bool = True
    # How long a resolved credential is trusted before the store is asked again; changes made through
    # this process take effect at once, changes made through another process within this time.
    auth_cache_ttl_ms: int = Field(1_000, ge=0, le=limits.auth_cache_ttl_ms_max)


class TelemetrySettings(_Strict):
    service_name: str = "jubao"
    traces_exporter: Literal["none", "console", "otlp"] = "none"
    # Head sampling (telemetry/calls.py): the share of calls without a caller's trace context that are
    # traced; a caller's context decides for its calls, and server-side errors are always traced.
    traces_sample_ratio: float = Field(0.01, ge=0.0, le=1.0)
    metrics_exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "127.0.0.1:4317"
    metrics_export_interval_ms: int = Field(10_000, gt=0)
    # Prometheus scrape endpoint on 127.0.0.1; None turns it off.
    prometheus_port: int | None = Field(9464, ge=0, lt=65536)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JUBAO_", env_nested_delimiter="__", extra="forbid", frozen=True, toml_file=None
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    tenancy: TenancySettings = TenancySettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    bulk: BulkSettings = BulkSettings()
    # Apply pending schema files at start (dev default); production runs `jubao-server migrate` first.
    migrate_on_start: bool = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    def section(self, name: str, model: type[M]) -> M:
        """The section `name`, a `model` (a product's section, which the host does not name)."""
        value = getattr(self, name, None)
        if not isinstance(value, model):
            raise LookupError(f"the settings have no section {name} of {model.__name__}")
        return value


def with_sections(sections: Mapping[str, type[BaseModel]]) -> type[Settings]:
    """The settings model with a section per entry, defaulting to the section model's defaults."""
    clashes = sorted(set(sections) & set(Settings.model_fields))
    ensure(not clashes, f"sections named like the host's: {clashes}")
    fields: dict[str, Any] = {name: (model, Field(default_factory=model)) for name, model in sections.items()}
    return create_model("Settings", __base__=Settings, **fields)


class SettingsError(Exception):
    """A setting has a bad value; the message names it and where it came from."""


def load_settings(model: type[Settings], config_path: Path | None = None) -> Settings:
    """Load and validate the settings of `model`, or raise `SettingsError` with one line per bad value."""
    path = config_path or (Path(os.environ["JUBAO_CONFIG"]) if os.environ.get("JUBAO_CONFIG") else None)
    if path is not None and not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    from_file = type(model.__name__, (model,), {"model_config": SettingsConfigDict(toml_file=path)})
    try:
        return cast(type[Settings], from_file)()
    except ValidationError as error:
        raise SettingsError(_describe(error, path)) from None


def _describe(error: ValidationError, path: Path | None) -> str:
    lines = ["invalid settings" + (f" (config file {path}, JUBAO_* environment)" if path else "")]
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        env_name = "JUBAO_" + "__".join(str(p).upper() for p in item["loc"])
        lines.append(f"  {field} (env {env_name}): {item['msg']}")
    return "\n".join(lines)
