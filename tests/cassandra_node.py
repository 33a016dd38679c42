"""The local Cassandra node of the tests (`make cassandra-up`): how to reach it, and its schema."""

from __future__ import annotations

import asyncio
import os

from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.config import CassandraSettings
from jubao_server.storage.contract import Faults, StorageError

TEST_HOST = "127.0.0.1"
# The shared test keyspace; a checkout running its suite beside another (a second worktree on the same node)
# names its own with JUBAO_TEST_KEYSPACE so the two never share rows or shard leases. Each pytest-xdist worker
# of one run takes its own keyspace the same way (`jubao_test_gw0`, ...).
_CHECKOUT_KEYSPACE = os.environ.get("JUBAO_TEST_KEYSPACE", "jubao_test")
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
TEST_KEYSPACE = _CHECKOUT_KEYSPACE + (f"_{_WORKER}" if _WORKER else "")
# The keyspace of the tests on the three-node cluster (chaos, noisy neighbour, a node down), kept between
# them: migrating a fresh keyspace there takes a minute on an idle machine (a schema agreement per table).
# One for all of them: they run one after the other (`backends.ON_THE_CLUSTER`).
CLUSTER_KEYSPACE = f"{_CHECKOUT_KEYSPACE}_cluster"
# The same knob as scripts/cassandra/node.py, so a node on another port is found too.
PORT_VARIABLE = "JUBAO_CASSANDRA_PORT"
DEFAULT_PORT = 9042
# A loaded test machine (two test workers beside four Cassandra nodes) can take seconds to accept.
CONNECT_TIMEOUT_MS = 10_000
REQUEST_TIMEOUT_MS = 15_000
_DROP_KEYSPACE = "DROP KEYSPACE IF EXISTS {}"
_COLUMNS = "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = %s AND table_name = %s"


class NodeUnavailable(ConnectionError):
    """No Cassandra node answers on the test address; the suite decides whether to skip or fail."""


def test_settings(keyspace: str = TEST_KEYSPACE) -> CassandraSettings:
    return CassandraSettings(
        contact_points=[TEST_HOST],
        port=int(os.environ.get(PORT_VARIABLE, DEFAULT_PORT)),
        keyspace=keyspace,
        connect_timeout_ms=CONNECT_TIMEOUT_MS,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )


async def open_test_backend(faults: Faults, keyspace: str = TEST_KEYSPACE) -> CassandraBackend:
    """A backend on the local node, keyspace `jubao_test` unless told (not migrated: the caller migrates).
    Tests share `jubao_test`; one that needs a schema of its own takes a keyspace of its own and drops it
    (`drop_keyspace`)."""
    settings = test_settings(keyspace)
    try:
        return await CassandraBackend.connect(settings, SYSTEM_CLOCK, faults=faults)
    except StorageError as error:
        raise NodeUnavailable(
            f"no Cassandra node at {TEST_HOST}:{settings.port} (start one with make cassandra-up): {error}"
        ) from error


async def table_columns(backend: CassandraBackend, table: str) -> dict[str, str]:
    """Column name to CQL type for `table` of the backend's keyspace, key columns and `scope` included,
    read from `system_schema` on the backend's own driver session."""
    rows = await asyncio.to_thread(backend._session.execute, _COLUMNS, (backend.keyspace, table))
    return {name: kind for name, kind in rows}


async def drop_keyspace(backend: CassandraBackend) -> None:
    """Drop the backend's keyspace (never the shared `jubao_test`)."""
    assert backend.keyspace != TEST_KEYSPACE, "the shared test keyspace stays"
    await asyncio.to_thread(backend._session.execute, _DROP_KEYSPACE.format(backend.keyspace))
