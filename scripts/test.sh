#!/usr/bin/env bash
# `make test`: lint, then every test, with the Cassandra node and the three-node cluster up
# (scripts/with_cassandra.sh), on JUBAO_TEST_WORKERS pytest-xdist workers (2: this machine's cores). The
# tests that kill the cluster's nodes share one worker (`xdist_group("cluster")`, `--dist loadgroup`), and
# each worker has a Cassandra keyspace of its own (tests/cassandra_node.py).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory lint
export JUBAO_TEST_WORKERS="${JUBAO_TEST_WORKERS:-2}"
# With the cluster up, its tests' keyspace is migrated first, on an idle machine (tests/cluster_keyspace.py).
JUBAO_WITH_CLUSTER=1 bash scripts/with_cassandra.sh bash -c '
    if [[ "${JUBAO_TEST_CLUSTER:-}" == required ]]; then .venv/bin/python -m tests.cluster_keyspace; fi
    exec .venv/bin/pytest -q -p no:cacheprovider --durations=25 -n "$JUBAO_TEST_WORKERS" --dist loadgroup "$@"
' _ "$@"
