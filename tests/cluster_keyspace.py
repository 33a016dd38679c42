"""The keyspace the tests on the three-node cluster share (`cassandra_node.CLUSTER_KEYSPACE`), with the
cluster's settings (`scripts/cassandra/cluster.toml`: replication factor 3, QUORUM).

`python -m tests.cluster_keyspace` migrates it (`loadtest.cluster.migrate_keyspace`). `make test` does so
before the suite loads the machine: on three nodes each table waits for their schema agreement, a minute on
an idle machine and several beside the suite's two workers, on the path of the cluster's tests that run one
after the other."""

from __future__ import annotations

from jubao_server.app import load_settings
from jubao_server.storage.config import CassandraSettings

from loadtest.cluster import CLUSTER_CONFIG, migrate_keyspace
from tests.cassandra_node import CLUSTER_KEYSPACE


def cluster_settings() -> CassandraSettings:
    configured = load_settings(CLUSTER_CONFIG).storage.cassandra
    return configured.model_copy(update={"keyspace": CLUSTER_KEYSPACE})


if __name__ == "__main__":
    print(migrate_keyspace(CLUSTER_KEYSPACE), end="")
