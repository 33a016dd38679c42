"""Open a real backend for a test: SQLite in the test's temp folder, or the local Cassandra node.

Cassandra policy: when no node answers, a CI run (`CI=true`) or a `make test` that started the node
(`JUBAO_TEST_CASSANDRA=required`) fails; any other run skips with a loud reason, repeated in the summary.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, NoReturn

import pytest
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.cassandra import testing as cassandra_testing
from jubao_server.storage.config import SqliteSettings
from jubao_server.storage.contract import FaultPlan, StorageBackend
from jubao_server.storage.sqlite import SqliteBackend

BACKENDS: Final = ("sqlite", "cassandra")

skip_reasons: set[str] = set()


def report_skips(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in sorted(skip_reasons):
        terminalreporter.write_line(f"CASSANDRA TESTS NOT RUN: {reason}", yellow=True, bold=True)


def _node_unavailable(error: Exception) -> NoReturn:
    message = f"Cassandra node not running: run `make cassandra-up` ({error})"
    if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CASSANDRA") == "required":
        pytest.fail(message)
    skip_reasons.add(message)
    pytest.skip(message)


async def open_test_backend(name: str, tmp_path: Path, faults: FaultPlan) -> StorageBackend:
    if name == "sqlite":
        return await SqliteBackend.open(
            SqliteSettings(path=tmp_path / "var" / "test.db"), SYSTEM_CLOCK, faults
        )
    try:
        return await cassandra_testing.open_test_backend(faults)
    except cassandra_testing.NodeUnavailable as error:
        _node_unavailable(error)
