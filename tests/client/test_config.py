"""ClientConfig: environment parsing, validation, and the channel settings derived from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jubao.client import Client, ClientConfig, ConfigError
from jubao.client.channel import MESSAGE_BYTES_MAX, channel_options, service_config_json
from jubao.client.config import child_environment


def test_from_env_reads_every_variable() -> None:
    env = {
        "JUBAO_ENDPOINT": "jubao.example:443",
        "JUBAO_API_KEY": "jb_key",
        "JUBAO_TLS_CA": "/etc/ca.pem",
        "JUBAO_TLS_CERT": "/etc/client.pem",
        "JUBAO_TLS_KEY": "/etc/client.key",
        "JUBAO_TIMEOUT_MS": "2500",
    }
    config = ClientConfig.from_env(env)
    assert (config.endpoint, config.api_key, config.default_timeout_ms) == (
        "jubao.example:443",
        "jb_key",
        2500,
    )
    assert (config.root_certificates_path, config.client_key_path) == ("/etc/ca.pem", "/etc/client.key")
    assert config.uses_tls


def test_a_child_process_gets_the_config_it_was_given() -> None:
    """A download over Arrow Flight runs in a process of its own (`child_environment`): it reads the same
    bulk endpoint, key and TLS settings, from the JUBAO_* variables."""
    config = ClientConfig(bulk_endpoint="bulk.example:443", api_key="jb_key", tls=True)
    child = ClientConfig.from_env(child_environment(config))
    assert (child.bulk_endpoint, child.api_key, child.tls, child.root_certificates_path) == (
        "bulk.example:443",
        "jb_key",
        True,
        None,
    )
    assert not ClientConfig.from_env(child_environment(ClientConfig())).uses_tls


def test_from_env_defaults_to_local_plaintext() -> None:
    config = ClientConfig.from_env({})
    assert config == ClientConfig()
    assert (config.endpoint, config.api_key, config.uses_tls) == ("127.0.0.1:50051", None, False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JUBAO_TIMEOUT_MS": "soon"}, "JUBAO_TIMEOUT_MS must be a whole number of milliseconds, got 'soon'"),
        ({"JUBAO_TIMEOUT_MS": "-5"}, "JUBAO_TIMEOUT_MS must be positive, got -5"),
        ({"JUBAO_TLS_CERT": "/etc/client.pem"}, "a client certificate needs its key"),
        ({"JUBAO_API_KEY": "two words"}, "api_key must be printable ASCII without spaces"),
    ],
)
def test_from_env_rejects_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClientConfig.from_env(env)


def test_repr_hides_api_key() -> None:
    assert "jb_secret" not in repr(ClientConfig(api_key="jb_secret"))


def test_unreadable_ca_file_fails_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(ConfigError, match="cannot read the CA certificate file"):
        Client(ClientConfig(root_certificates_path=missing))


def test_service_config_retries_only_unavailable() -> None:
    config = ClientConfig(retry_attempts_max=3, retry_initial_backoff_ms=50, retry_max_backoff_ms=800)
    (method,) = json.loads(service_config_json(config))["methodConfig"]
    assert method["name"] == [{}]
    assert method["retryPolicy"] == {
        "maxAttempts": 3,
        "initialBackoff": "0.050s",
        "maxBackoff": "0.800s",
        "backoffMultiplier": 2.0,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }


def test_calls_go_round_robin_over_the_addresses_of_the_endpoint() -> None:
    """An endpoint naming several addresses (the processes of one server) spreads calls over them all."""
    balancing = json.loads(service_config_json(ClientConfig()))["loadBalancingConfig"]
    assert balancing == [{"round_robin": {}}]


def test_single_attempt_has_no_retry_policy() -> None:
    (method,) = json.loads(service_config_json(ClientConfig(retry_attempts_max=1)))["methodConfig"]
    assert "retryPolicy" not in method


def test_channel_options_enable_retries_and_limit_sizes() -> None:
    options = dict(channel_options(ClientConfig(server_name_override="jubao.internal")))
    assert options["grpc.enable_retries"] == 1
    assert options["grpc.max_receive_message_length"] == MESSAGE_BYTES_MAX == 8 * 1024 * 1024
    assert options["grpc.ssl_target_name_override"] == "jubao.internal"
