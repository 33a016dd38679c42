#!/usr/bin/env bash
# Run a command with the local Cassandra node up: start it when Java and Maven are present (and stop it
# afterwards if this script started it). With CI=true a missing JDK or a node that fails to start fails.
set -euo pipefail
cd "$(dirname "$0")/.."

started_node=0
stop_node() { if [[ $started_node == 1 ]]; then make --no-print-directory cassandra-down || true; fi; }
trap stop_node EXIT

cql_port_open() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 9042), timeout=1)' 2>/dev/null; }
# This checkout's node answers CQL (node.py status: 0 answering, 1 running but not answering, 3 stopped).
own_node_answers() { python3 scripts/cassandra/node.py status >/dev/null 2>&1; }

if cql_port_open && ! own_node_answers; then
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

"$@"
