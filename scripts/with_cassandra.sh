#!/usr/bin/env bash
# Run a command with the local Cassandra node up: start it when Java and Maven are present (and stop it
# afterwards if this script started it). With JUBAO_WITH_CLUSTER=1 the three-node cluster too (the same
# way). With CI=true a missing JDK or a node that fails to start fails.
set -euo pipefail
cd "$(dirname "$0")/.."

started_node=0
started_cluster=0
stop_nodes() {
  if [[ $started_cluster == 1 ]]; then make --no-print-directory cassandra-cluster-down || true; fi
  if [[ $started_node == 1 ]]; then make --no-print-directory cassandra-down || true; fi
}
trap stop_nodes EXIT

port_open() { python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null; }
# This checkout's node answers CQL (node.py status: 0 answering, 1 running but not answering, 3 stopped).
own_node_answers() { python3 scripts/cassandra/node.py status >/dev/null 2>&1; }
own_cluster_answers() { python3 scripts/cassandra/node.py cluster status >/dev/null 2>&1; }
cluster_port="${JUBAO_CASSANDRA_CLUSTER_PORT:-9142}"

if port_open "${JUBAO_CASSANDRA_PORT:-9042}" && ! own_node_answers; then
  echo "using the Cassandra node already listening on 127.0.0.1:9042 (not started by this checkout)"
  export JUBAO_TEST_CASSANDRA=required
elif command -v java >/dev/null && command -v mvn >/dev/null; then
  if ! own_node_answers; then
    make --no-print-directory cassandra-up
    started_node=1
  fi
  export JUBAO_TEST_CASSANDRA=required
elif [[ "${CI:-}" == "true" ]]; then
  echo "CI=true but Java or Maven is missing: the Cassandra node cannot start" >&2
  exit 1
else
  echo "!!! Java or Maven not found: Cassandra is NOT available, its tests are SKIPPED (install JDK 17 + Maven)" >&2
fi

if [[ "${JUBAO_WITH_CLUSTER:-}" == "1" && "${JUBAO_TEST_CASSANDRA:-}" == "required" ]]; then
  if port_open "$cluster_port" && ! own_cluster_answers; then
    echo "using the Cassandra cluster already listening on 127.0.0.1:$cluster_port (not started by this checkout)"
    # The cluster tests stop and start its nodes: through the folder of the checkout that started them.
    JUBAO_CASSANDRA_CLUSTER_DIR="$(python3 scripts/cassandra/node.py cluster where)"
    export JUBAO_CASSANDRA_CLUSTER_DIR
  elif ! own_cluster_answers; then
    started_cluster=1
    make --no-print-directory cassandra-cluster-up
  fi
  export JUBAO_TEST_CLUSTER=required
fi

"$@"
