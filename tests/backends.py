"""Open a real backend for a test: SQLite in the test's temp folder, the local Cassandra node, or memory.

Cassandra policy: when no node answers, a CI run (`CI=true`) or a `make test` that started the node
(`JUBAO_TEST_CASSANDRA=required`) fails; any other run skips with a loud reason, repeated in the summary.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final, NoReturn

import pytest
from jubao_server.app import migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import NO_FAULTS, Faults, StorageBackend
from jubao_server.storage.memory import MemoryBackend
from jubao_server.storage.sqlite import SqliteBackend

from tests import cassandra_node

# Fixture params: the Cassandra ones carry the `cassandra` marker (`pytest -m "not cassandra"` skips them).
CASSANDRA: Final = pytest.param("cassandra", marks=pytest.mark.cassandra)
BACKENDS: Final = ("sqlite", CASSANDRA, "memory")
# The tests that kill and start the three-node cluster's nodes (their modules' marks): `make test` runs them
# alone, one after the other, before the rest (`-m cluster` in scripts/test.sh).
ON_THE_CLUSTER: Final = [pytest.mark.cassandra, pytest.mark.cluster]
# The backends several processes can share: a memory store lives and dies inside one process.
SHARED_BACKENDS: Final = ("sqlite", CASSANDRA)

_NODE_UNAVAILABLE: Final = "Cassandra node not running"


def report_skips(terminalreporter: pytest.TerminalReporter) -> None:
    """Each reason Cassandra tests were skipped for, once, after the summary; read from the reports, so that
    the skips of pytest-xdist workers are named too."""
    reasons: set[str] = set()
    for report in terminalreporter.stats.get("skipped", ()):
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and _NODE_UNAVAILABLE in longrepr[2]:
            reasons.add(longrepr[2].removeprefix("Skipped: "))
    for reason in sorted(reasons):
        terminalreporter.write_line(f"CASSANDRA TESTS NOT RUN: {reason}", yellow=True, bold=True)


def _node_unavailable(error: Exception) -> NoReturn:
    message = f"{_NODE_UNAVAILABLE}: run `make cassandra-up` ({error})"
    if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CASSANDRA") == "required":
        pytest.fail(message)
    pytest.skip(message)


async def open_test_backend(
    name: str, tmp_path: Path, faults: Faults, keyspace: str = cassandra_node.TEST_KEYSPACE
) -> StorageBackend:
    """The backend `name` on the system clock, obeying `faults` (not migrated: the caller migrates); on
    Cassandra in the shared keyspace `jubao_test` unless told."""
    if name == "sqlite":
        settings = SqliteSettings(path=tmp_path / "var" / "test.db")
        return await SqliteBackend.open(settings, SYSTEM_CLOCK, faults=faults)
    if name == "memory":
        return MemoryBackend(SYSTEM_CLOCK, faults=faults)
    try:
        return await cassandra_node.open_test_backend(faults, keyspace)
    except cassandra_node.NodeUnavailable as error:
        _node_unavailable(error)


def process_settings(name: str, tmp_path: Path) -> dict[str, str]:
    """The settings (JUBAO_* variables) that point a server process at the store that
    `open_test_backend(name, tmp_path, ...)` opens (SQLite or Cassandra: processes cannot share memory)."""
    if name == "cassandra":
        return {
            "JUBAO_STORAGE__BACKEND": "cassandra",
            "JUBAO_STORAGE__CASSANDRA__KEYSPACE": cassandra_node.TEST_KEYSPACE,
        }
    return {"JUBAO_STORAGE__SQLITE__PATH": str(tmp_path / "var" / "test.db")}


@contextlib.asynccontextmanager
async def shared_store(name: str, tmp_path: Path) -> AsyncIterator[tuple[StorageBackend, dict[str, str]]]:
    """A migrated store that server processes share (SQLite or Cassandra), and the settings that point a
    process at it."""
    backend = await open_test_backend(name, tmp_path, NO_FAULTS)
    try:
        await migrate(backend)
        yield backend, process_settings(name, tmp_path)
    finally:
        await backend.close()
