"""Fixtures of the client tests: a fake server seeded with five tenants (three pages) and a config for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from jubao.client import ClientConfig

from .fakes import FakeServer, sample_tenant, serve

API_KEY = "jb_test_key_0123456789"
TENANT_IDS = ("alpha", "bravo", "charlie", "delta", "echo")


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with serve([sample_tenant(tenant_id) for tenant_id in TENANT_IDS]) as fake:
        yield fake


@pytest.fixture
def config(server: FakeServer) -> ClientConfig:
    """Fast retries (10 ms backoff) so the retry tests stay quick."""
    return ClientConfig(
        endpoint=server.endpoint,
        api_key=API_KEY,
        default_timeout_ms=5_000,
        retry_initial_backoff_ms=10,
        retry_max_backoff_ms=20,
    )
