"""Fixtures of the payments tests: a real server on SQLite and SDK clients of the demo tenants; a migrated
shared store (SQLite, Cassandra) for server processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao.client import AsyncClient, ClientConfig
from jubao.payments.v1 import payments_pb2 as pb
from jubao_server.storage.contract import StorageBackend

from tests.backends import SHARED_BACKENDS, shared_store
from tests.payments.support import FUNDS_MINOR, leg, open_account, pay
from tests.platform.harness import Running, demo_keys, settings_for, start


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return demo_keys()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    handle = await start(settings_for(tmp_path / "jubao.db"))
    yield handle
    await handle.close()


def client_of(running: Running, api_key: str) -> AsyncClient:
    return AsyncClient(ClientConfig(endpoint=running.address, api_key=api_key, default_timeout_ms=10_000))


@pytest.fixture
async def bank(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """demo-bank: has the payments product."""
    async with client_of(running, keys["demo-bank"]) as client:
        yield client


@pytest.fixture
async def platform(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """demo-platform: has payments too, but its own ledger."""
    async with client_of(running, keys["demo-platform"]) as client:
        yield client


@pytest.fixture
async def insurer(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """demo-insurer: no payments product."""
    async with client_of(running, keys["demo-insurer"]) as client:
        yield client


@pytest.fixture
async def funded(bank: AsyncClient) -> AsyncClient:
    """demo-bank with a settlement account that may go negative and alice funded with FUNDS_MINOR fen."""
    await open_account(bank, "settlement", kind=pb.ACCOUNT_KIND_SETTLEMENT, allow_negative=True)
    for account_id in ("alice", "bob", "shop", "fees"):
        await open_account(bank, account_id)
    await pay(bank, leg("settlement", "alice", FUNDS_MINOR))
    return bank


@pytest.fixture(params=SHARED_BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StorageBackend, dict[str, str]]]:
    """A migrated store and the settings that point a server process at it."""
    async with shared_store(request.param, tmp_path) as (backend, env):
        # Short leases: a server restarted after a kill (test_batch_kill) waits the killed one's out.
        # test_cluster, which waits none out, runs on its own.
        settings = {"JUBAO_PAYMENTS__SHARD_LEASE_MS": "3000", "JUBAO_TELEMETRY__LOG_LEVEL": "warning"}
        yield backend, env | settings
