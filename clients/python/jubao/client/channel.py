"""Channel settings shared by the sync and asyncio clients: credentials, retry policy, keepalive, sizes."""

from __future__ import annotations

import json
from typing import Final, TypeAlias

import grpc

from jubao.client.config import ClientConfig, read_file

MESSAGE_BYTES_MAX: Final = 8 * 1024 * 1024
KEEPALIVE_INTERVAL_MS: Final = 60_000
KEEPALIVE_TIMEOUT_MS: Final = 20_000
RETRYABLE_STATUS_CODES: Final = ("UNAVAILABLE",)

ChannelOption: TypeAlias = tuple[str, str | int]


def channel_options(config: ClientConfig) -> list[ChannelOption]:
    """gRPC channel arguments: native retries per `service_config_json`, keepalive, 8 MiB messages."""
    options: list[ChannelOption] = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config_json(config)),
        ("grpc.keepalive_time_ms", KEEPALIVE_INTERVAL_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
        ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
    ]
    if config.server_name_override:
        options.append(("grpc.ssl_target_name_override", config.server_name_override))
    return options


def service_config_json(config: ClientConfig) -> str:
    """The default service config: calls go round robin over every address the endpoint names or
    resolves to (the server processes of a machine, say: `ipv4:127.0.0.1:50061,127.0.0.1:50062`), and
    every method of every service retries UNAVAILABLE with backoff.

    The channel resends the same serialized request on each attempt, so a request_id filled in before
    the first attempt is the one every retry carries.
    """
    method_config: dict[str, object] = {"name": [{}]}
    if config.retry_attempts_max > 1:
        method_config["retryPolicy"] = {
            "maxAttempts": config.retry_attempts_max,
            "initialBackoff": _duration(config.retry_initial_backoff_ms),
            "maxBackoff": _duration(config.retry_max_backoff_ms),
            "backoffMultiplier": config.retry_backoff_multiplier,
            "retryableStatusCodes": list(RETRYABLE_STATUS_CODES),
        }
    return json.dumps({"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [method_config]})


def channel_credentials(config: ClientConfig) -> grpc.ChannelCredentials | None:
    """TLS credentials (mutual when a client certificate is configured); None for a plaintext channel."""
    if not config.uses_tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(config.root_certificates_path, "CA certificate"),
        private_key=read_file(config.client_key_path, "client key"),
        certificate_chain=read_file(config.client_certificate_path, "client certificate"),
    )


def _duration(milliseconds: int) -> str:
    return f"{milliseconds / 1000:.3f}s"
