"""Fixtures of the co-creation tests: the gRPC server (on SQLite and on Cassandra) with its Flight process
and SDK clients of the demo tenants, and the bulk plane's fixtures (a migrated store with the demo tenants
on every shared backend, the Flight process pointed at it, the demo keys) for the tests of datasets' rows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from jubao.client import AsyncClient, ClientConfig
from jubao_server.storage.contract import NO_FAULTS

from tests import cassandra_node
from tests.backends import SHARED_BACKENDS, open_test_backend, process_settings
from tests.bulk.conftest import flight_process, keys, pytest_terminal_summary, store
from tests.bulk.support import FlightProcess
from tests.cocreation.support import grant_cocreation
from tests.platform.harness import CATALOGUE, Running, demo_keys, settings_for, start

__all__ = [
    "backend_name",
    "clients",
    "flight",
    "flight_process",
    "keys",
    "pytest_terminal_summary",
    "running",
    "store",
]


@pytest.fixture(params=SHARED_BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """The storage the gRPC server and its Flight process share: SQLite, or the Cassandra node."""
    name: str = request.param
    return name


@pytest.fixture
async def running(backend_name: str, tmp_path: Path) -> AsyncIterator[Running]:
    """The gRPC server on `backend_name` (Cassandra: the shared test keyspace, where ids must be fresh)."""
    probe = await open_test_backend(backend_name, tmp_path, NO_FAULTS)  # skips or fails without a node
    await probe.close()
    storage = {"backend": backend_name, "cassandra": {"keyspace": cassandra_node.TEST_KEYSPACE}}
    handle = await start(settings_for(tmp_path / "var" / "test.db", storage=storage))
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
def flight(running: Running, backend_name: str, tmp_path: Path) -> Iterator[FlightProcess]:
    """The Flight process on the gRPC server's storage."""
    env = process_settings(backend_name, tmp_path) | {"JUBAO_TENANCY__CATALOGUE_DIR": str(CATALOGUE)}
    process = FlightProcess.start(env, tmp_path / "flight.log")
    try:
        yield process
    finally:
        process.kill()
