"""Fixtures of the conformance suite: every test runs once per backend on a fresh store.

Isolation: SQLite gets a new database file per test; Cassandra shares one keyspace, so every test also
writes under its own random `scope`, which isolates it on both backends.

Cassandra policy: when no node answers, a CI run (`CI=true`) or a `make test` that started the node
(`JUBAO_TEST_CASSANDRA=required`) fails, any other run skips with a loud reason (repeated in the summary).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, NoReturn

import pytest
from jubao_server.storage.cassandra import testing as cassandra_testing
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import FaultPlan, StorageBackend
from jubao_server.storage.sqlite import SqliteBackend

from .support import migration_sets

BACKENDS: Final = ("sqlite", "cassandra")

_skip_reasons: set[str] = set()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in sorted(_skip_reasons):
        terminalreporter.write_line(f"CASSANDRA CONFORMANCE NOT RUN: {reason}", yellow=True, bold=True)


def _node_unavailable(error: Exception) -> NoReturn:
    message = f"Cassandra node not running: run `make cassandra-up` ({error})"
    if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CASSANDRA") == "required":
        pytest.fail(message)
    _skip_reasons.add(message)
    pytest.skip(message)


async def _open(name: str, tmp_path: Path, faults: FaultPlan) -> StorageBackend:
    if name == "sqlite":
        return await SqliteBackend.open(SqliteSettings(path=tmp_path / "var" / "conformance.db"), faults)
    try:
        return await cassandra_testing.open_test_backend(faults)
    except cassandra_testing.NodeUnavailable as error:
        _node_unavailable(error)


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
    opened = await _open(request.param, tmp_path, faults)
    try:
        await opened.migrate(migration_sets(opened.name))
        yield opened
    finally:
        await opened.close()
