#!/usr/bin/env bash
# `make test`: lint, then every test, with the Cassandra node and the three-node cluster up
# (scripts/with_cassandra.sh), in two parts: the tests that kill and start the cluster's nodes (marked
# `cluster`) alone, one after the other, then the rest on JUBAO_TEST_WORKERS pytest-xdist workers (2: this
# machine's cores), each with a Cassandra keyspace of its own (tests/cassandra_node.py). The cluster's tests
# run alone because a fault run beside a busy worker is two loads on two cores: in CI, a chaos run beside
# one never got back to its rate after a server kill. Arguments go to both parts (`make test` takes none).
set -euo pipefail
cd "$(dirname "$0")/.."

# One part of the suite. Its exit 5 (no test selected, as when the arguments name the other part's files)
# fails the run only when the other part selected none either.
part() { .venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"; }

if [[ "${1:-}" == --parts ]]; then
  shift
  # With the cluster up, its tests' keyspace is migrated first, on an idle machine (tests/cluster_keyspace.py).
  if [[ "${JUBAO_TEST_CLUSTER:-}" == required ]]; then .venv/bin/python -m tests.cluster_keyspace; fi
  cluster=0
  rest=0
  part -m cluster "$@" || cluster=$?
  part -n "$JUBAO_TEST_WORKERS" -m "not cluster" "$@" || rest=$?
  if [[ $cluster == 5 && $rest == 5 ]]; then exit 5; fi
  for status in "$cluster" "$rest"; do
    if [[ $status != 0 && $status != 5 ]]; then exit "$status"; fi
  done
  exit 0
fi

make --no-print-directory lint
export JUBAO_TEST_WORKERS="${JUBAO_TEST_WORKERS:-2}"
JUBAO_WITH_CLUSTER=1 bash scripts/with_cassandra.sh bash scripts/test.sh --parts "$@"
