"""Fixtures of the fund TA tests: a real server on SQLite at a time the test sets, the demo fund house
(demo-fund) and platform (demo-platform), and a second manager and distributor made per test."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import AsyncClient
from jubao_server.app import migrate
from jubao_server.storage.contract import NO_FAULTS, StorageBackend

from tests import cassandra_node
from tests.backends import BACKENDS, SHARED_BACKENDS, open_test_backend, report_skips
from tests.fundta.support import SetClock, client_of, new_tenant, shanghai_ms
from tests.platform.harness import Running, demo_keys, settings_for, start


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skips(terminalreporter)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    """A migrated store of each backend (the storage-level tests: holdings, the day-close restart, the
    simulation)."""
    opened = await open_test_backend(request.param, tmp_path, NO_FAULTS)
    try:
        await migrate(opened)
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return demo_keys()


@pytest.fixture
def clock() -> SetClock:
    """Friday 4 December 2026, 10:00 in Shanghai."""
    return SetClock(shanghai_ms("2026-12-04 10:00:00"))


@pytest.fixture
async def running(tmp_path: Path, clock: SetClock) -> AsyncIterator[Running]:
    handle = await start(settings_for(tmp_path / "jubao.db"), clock=clock)
    yield handle
    await handle.close()


@pytest.fixture
async def manager(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """demo-fund: a fund house."""
    async with client_of(running, keys["demo-fund"]) as client:
        yield client


@pytest.fixture
async def platform(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """demo-platform: a distributor."""
    async with client_of(running, keys["demo-platform"]) as client:
        yield client


@pytest.fixture
async def other_manager(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    key = await new_tenant(running, keys["demo-operator"], "other-fund", admin_pb.TENANT_KIND_FUND_HOUSE)
    async with client_of(running, key) as client:
        yield client


@pytest.fixture
async def bank(running: Running, keys: dict[str, str]) -> AsyncIterator[AsyncClient]:
    """A second distributor."""
    key = await new_tenant(running, keys["demo-operator"], "other-bank", admin_pb.TENANT_KIND_BANK)
    async with client_of(running, key) as client:
        yield client


@dataclasses.dataclass
class Cast:
    """Tenants of their own on a server of each shared backend (on Cassandra the keyspace is shared, so
    tenant ids and fund codes are fresh per test): a manager and its fund code, two distributors, another
    manager; and the server's storage."""

    manager: AsyncClient
    platform: AsyncClient
    bank: AsyncClient
    other_manager: AsyncClient
    ids: dict[str, str]
    code: str
    backend: StorageBackend


@pytest.fixture(params=SHARED_BACKENDS)
async def cast(
    request: pytest.FixtureRequest, tmp_path: Path, clock: SetClock, keys: dict[str, str]
) -> AsyncIterator[Cast]:
    probe = await open_test_backend(request.param, tmp_path, NO_FAULTS)  # skips or fails without a node
    await probe.close()
    storage = {"backend": request.param, "cassandra": {"keyspace": cassandra_node.TEST_KEYSPACE}}
    handle = await start(settings_for(tmp_path / "var" / "test.db", storage=storage), clock=clock)
    suffix = uuid.uuid4().hex[:10]
    roles = {
        "manager": admin_pb.TENANT_KIND_FUND_HOUSE,
        "platform": admin_pb.TENANT_KIND_PLATFORM,
        "bank": admin_pb.TENANT_KIND_BANK,
        "other_manager": admin_pb.TENANT_KIND_FUND_HOUSE,
    }
    ids = {role: f"{role.replace('_', '-')}-{suffix}" for role in roles}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for role, kind in roles.items():
            key = await new_tenant(handle, keys["demo-operator"], ids[role], kind)
            clients[role] = await stack.enter_async_context(client_of(handle, key))
        yield Cast(**clients, ids=ids, code=f"S{suffix.upper()}", backend=handle.server.backend)
    await handle.close()
