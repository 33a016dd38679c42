"""Fixtures of the fund TA tests: a real server on SQLite at a time the test sets, the demo fund house
(demo-fund) and platform (demo-platform), and a second manager and distributor made per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao.admin.v1 import tenant_admin_pb2 as admin_pb
from jubao.client import AsyncClient
from jubao_server.app import migrate
from jubao_server.storage.contract import NO_FAULTS, StorageBackend

from tests.backends import BACKENDS, open_test_backend, report_skips
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
