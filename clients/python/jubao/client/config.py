"""How a client reaches and authenticates to the service: `ClientConfig`, by hand or from the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, TypeAlias

ENV_ENDPOINT: Final = "JUBAO_ENDPOINT"
ENV_BULK_ENDPOINT: Final = "JUBAO_BULK_ENDPOINT"
ENV_API_KEY: Final = "JUBAO_API_KEY"
ENV_TLS: Final = "JUBAO_TLS"
ENV_TLS_CA: Final = "JUBAO_TLS_CA"
ENV_TLS_CERT: Final = "JUBAO_TLS_CERT"
ENV_TLS_KEY: Final = "JUBAO_TLS_KEY"
ENV_TIMEOUT_MS: Final = "JUBAO_TIMEOUT_MS"

DEFAULT_ENDPOINT: Final = "127.0.0.1:50051"
DEFAULT_BULK_ENDPOINT: Final = "127.0.0.1:50052"
DEFAULT_TIMEOUT_MS: Final = 10_000
# What JUBAO_TLS may say to turn TLS on (verified by the system roots without JUBAO_TLS_CA).
_TRUE: Final = frozenset({"1", "true", "yes", "on"})

PathLike: TypeAlias = str | os.PathLike[str]


class ConfigError(ValueError):
    """A configuration value is missing, malformed or unreadable."""


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Where the service is, how to authenticate, and the default deadline and retry policy of every call.

    TLS is used when `tls` is set or any certificate path is given; without `root_certificates_path` the
    system roots verify the server. A client certificate and key (mutual TLS) identify the tenant instead
    of, or besides, `api_key`. gRPC caps `retry_attempts_max` at 5; 1 disables retries.
    """

    endpoint: str = DEFAULT_ENDPOINT
    # host:port of the bulk (Arrow Flight) server: large co-creation query results come from there.
    bulk_endpoint: str = DEFAULT_BULK_ENDPOINT
    api_key: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    root_certificates_path: PathLike | None = None
    client_certificate_path: PathLike | None = None
    client_key_path: PathLike | None = None
    server_name_override: str | None = None
    default_timeout_ms: int = DEFAULT_TIMEOUT_MS
    retry_attempts_max: int = 4
    retry_initial_backoff_ms: int = 100
    retry_max_backoff_ms: int = 2_000
    retry_backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        _require(bool(self.endpoint.strip()), "endpoint must not be empty")
        _require(
            self.api_key is None or _is_token(self.api_key), "api_key must be printable ASCII without spaces"
        )
        _require(
            (self.client_certificate_path is None) == (self.client_key_path is None),
            f"a client certificate needs its key: give both ({ENV_TLS_CERT} and {ENV_TLS_KEY}) or neither",
        )
        _require(self.default_timeout_ms > 0, "default_timeout_ms must be positive")
        _require(self.retry_attempts_max >= 1, "retry_attempts_max must be at least 1")
        _require(self.retry_initial_backoff_ms > 0, "retry_initial_backoff_ms must be positive")
        _require(
            self.retry_max_backoff_ms >= self.retry_initial_backoff_ms,
            "retry_max_backoff_ms must be at least retry_initial_backoff_ms",
        )
        _require(self.retry_backoff_multiplier > 0, "retry_backoff_multiplier must be positive")

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.root_certificates_path is not None or self.client_certificate_path is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """The configuration named by the JUBAO_* variables (unset or empty ones keep their defaults)."""
        env = os.environ if environ is None else environ
        return cls(
            endpoint=env.get(ENV_ENDPOINT) or DEFAULT_ENDPOINT,
            bulk_endpoint=env.get(ENV_BULK_ENDPOINT) or DEFAULT_BULK_ENDPOINT,
            api_key=env.get(ENV_API_KEY) or None,
            tls=env.get(ENV_TLS, "").strip().lower() in _TRUE,
            root_certificates_path=env.get(ENV_TLS_CA) or None,
            client_certificate_path=env.get(ENV_TLS_CERT) or None,
            client_key_path=env.get(ENV_TLS_KEY) or None,
            default_timeout_ms=_positive_int(env, ENV_TIMEOUT_MS, DEFAULT_TIMEOUT_MS),
        )


def child_environment(config: ClientConfig) -> dict[str, str]:
    """This process's environment with the JUBAO_* variables that give a child process `config`'s bulk
    endpoint and credentials (`from_env` reads them): a download over Arrow Flight runs in a process of
    its own, apart from gRPC's."""
    env = dict(os.environ)
    settings = {
        ENV_TLS: "1" if config.tls else None,
        ENV_BULK_ENDPOINT: config.bulk_endpoint,
        ENV_API_KEY: config.api_key,
        ENV_TLS_CA: config.root_certificates_path,
        ENV_TLS_CERT: config.client_certificate_path,
        ENV_TLS_KEY: config.client_key_path,
    }
    for name, value in settings.items():
        env.pop(name, None)
        if value is not None:
            env[name] = os.fspath(value)
    return env


def read_file(path: PathLike | None, what: str) -> bytes | None:
    """The bytes of a configured file (a certificate or key, named `what` in the error), or None."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file {path}: {error.strerror}") from error


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_token(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable() and " " not in value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of milliseconds, got {text!r}") from None
    _require(value > 0, f"{name} must be positive, got {value}")
    return value
