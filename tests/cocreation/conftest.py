"""Fixtures of the co-creation tests: the gRPC server on SQLite with SDK clients of the demo tenants, and
the bulk plane's fixtures (a migrated store with the demo tenants on every shared backend, the Flight
process pointed at it, the demo keys) for the tests of datasets' rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from jubao.client import AsyncClient, ClientConfig

from tests.bulk.conftest import flight_process, keys, pytest_terminal_summary, store
from tests.bulk.support import FlightProcess
from tests.cocreation.support import grant_cocreation
from tests.platform.harness import CATALOGUE, Running, demo_keys, settings_for, start

__all__ = ["clients", "flight", "flight_process", "keys", "pytest_terminal_summary", "running", "store"]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    handle = await start(settings_for(tmp_path / "jubao.db"))
    await grant_cocreation(handle.server.backend)
    yield handle
    await handle.close()


@pytest.fixture
async def clients(running: Running) -> AsyncIterator[dict[str, AsyncClient]]:
    """The demo platform and bank (cocreation), the operator (cocreation, never invited) and the fund
    house (no cocreation)."""
    keys = demo_keys()
    opened = {
        name: AsyncClient(ClientConfig(endpoint=running.address, api_key=keys[f"demo-{name}"]))
        for name in ("platform", "bank", "operator", "fund")
    }
    yield opened
    for client in opened.values():
        await client.close()


@pytest.fixture
def flight(running: Running, tmp_path: Path) -> Iterator[FlightProcess]:
    env = {
        "JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "jubao.db"),
        "JUBAO_TENANCY__CATALOGUE_DIR": str(CATALOGUE),
    }
    process = FlightProcess.start(env, tmp_path / "flight.log")
    try:
        yield process
    finally:
        process.kill()
