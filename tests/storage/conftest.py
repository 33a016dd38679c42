"""Fixtures of the conformance suite: every test runs once per backend on a fresh store.

Isolation: SQLite gets a new database file per test and memory a new store; Cassandra shares one
keyspace, so every test also writes under its own random `scope`, which isolates it on every backend.
The skip-or-fail policy for a missing Cassandra node is in `tests/backends.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jubao_server.storage.contract import StorageBackend

from tests.backends import BACKENDS, open_test_backend, report_skips
from tests.sim.faults import FaultPlan

from .support import migrated


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    report_skips(terminalreporter)


@pytest.fixture
def faults() -> FaultPlan:
    """The fault plan of the test's backend: arm it inside the test."""
    return FaultPlan()


@pytest.fixture
def scope() -> str:
    """A fresh tenant scope per test."""
    return f"t{uuid.uuid4().hex}"


@pytest.fixture(params=BACKENDS)
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, faults: FaultPlan
) -> AsyncIterator[StorageBackend]:
    async with migrated(await open_test_backend(request.param, tmp_path, faults)) as opened:
        yield opened
