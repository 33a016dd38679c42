"""A `Ledger` on a real backend (SQLite, the local Cassandra node, memory), in a fresh tenant per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao_server.app import migrate
from jubao_server.payments.config import PaymentsSettings
from jubao_server.storage.contract import NO_FAULTS, StorageBackend

from tests.backends import BACKENDS, open_test_backend, report_skips

SHARDS = 4


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skips(terminalreporter)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    opened = await open_test_backend(request.param, tmp_path, NO_FAULTS)
    try:
        await migrate(opened)
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:20]}"


@pytest.fixture
def settings() -> PaymentsSettings:
    """Short leases: a process killed mid-run (the simulation) is taken over within a second."""
    return PaymentsSettings(shard_count=SHARDS, shard_lease_ms=1_000)
