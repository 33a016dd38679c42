"""The loadtest end-to-end tests use the platform tests' real server on SQLite and the demo keys; the chaos
and noisy-neighbour tests use the three-node cluster (`cluster`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from loadtest.cluster import cluster_lock, node_py, nodes_up
from tests.platform.conftest import keys, running

__all__ = ["cluster", "keys", "running"]

STATUS_TIMEOUT_S = 60.0


@pytest.fixture
def cluster() -> Iterator[None]:
    """The three-node cluster runs (`make cassandra-cluster-up`; `make test` starts it): skipped when it
    does not, except in CI. Every node is up again afterwards, also when the test failed half-way."""
    status = node_py(["cluster", "status"], STATUS_TIMEOUT_S)
    if status.returncode == 3:
        message = "the Cassandra cluster is not running: run `make cassandra-cluster-up`"
        if os.environ.get("CI") == "true" or os.environ.get("JUBAO_TEST_CLUSTER") == "required":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield
    finally:
        with cluster_lock():
            nodes_up()
