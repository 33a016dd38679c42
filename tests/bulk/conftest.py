from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.contract import NO_FAULTS, StorageBackend
from jubao_server.tenancy.catalogue import load_catalogue
from jubao_server.tenancy.seed import seed_catalogue
from jubao_server.tenancy.store import TenantStore

from tests.backends import SHARED_BACKENDS, open_test_backend, process_settings, report_skips
from tests.bulk.support import FlightProcess, clear_jobs
from tests.platform.harness import CATALOGUE, demo_keys


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skips(terminalreporter)


@pytest.fixture(params=SHARED_BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[StorageBackend, dict[str, str]]]:
    """A migrated store with the demo tenants, and the settings that point a process at it."""
    backend = await open_test_backend(request.param, tmp_path, NO_FAULTS)
    await migrate(backend)
    await seed_catalogue(TenantStore(backend, SYSTEM_CLOCK), load_catalogue(CATALOGUE), SYSTEM_CLOCK)
    await clear_jobs(backend)
    env = process_settings(request.param, tmp_path)
    try:
        yield backend, env | {"JUBAO_TENANCY__CATALOGUE_DIR": str(CATALOGUE)}
    finally:
        await backend.close()


@pytest.fixture
def flight_process(store: tuple[StorageBackend, dict[str, str]], tmp_path: Path) -> Iterator[FlightProcess]:
    process = FlightProcess.start(store[1], tmp_path / "flight.log")
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return demo_keys()
