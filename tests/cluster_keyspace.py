"""The keyspace the tests on the three-node cluster share (`cassandra_node.CLUSTER_KEYSPACE`), with the
cluster's settings (`scripts/cassandra/cluster.toml`: replication factor 3, QUORUM).

`python -m tests.cluster_keyspace` migrates it. `make test` does so before the suite loads the machine: on
three nodes each table waits for their schema agreement, a minute on an idle machine and several beside
the suite's two workers, on the path of the cluster's tests that run one after the other."""

from __future__ import annotations

import asyncio
import time

from jubao_server.app import load_settings, migrate
from jubao_server.clock import SYSTEM_CLOCK
from jubao_server.storage.cassandra.backend import CassandraBackend
from jubao_server.storage.config import CassandraSettings

from loadtest.cluster import CLUSTER_CONFIG
from tests.cassandra_node import CLUSTER_KEYSPACE


def cluster_settings() -> CassandraSettings:
    configured = load_settings(CLUSTER_CONFIG).storage.cassandra
    return configured.model_copy(update={"keyspace": CLUSTER_KEYSPACE})


async def _migrate() -> None:
    started_s = time.monotonic()
    backend = await CassandraBackend.connect(cluster_settings(), SYSTEM_CLOCK)
    try:
        applied = await migrate(backend)
    finally:
        await backend.close()
    elapsed_s = time.monotonic() - started_s
    print(f"cluster keyspace {CLUSTER_KEYSPACE}: {len(applied)} migrations applied in {elapsed_s:.1f} s")


if __name__ == "__main__":
    asyncio.run(_migrate())
