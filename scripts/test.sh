#!/usr/bin/env bash
# `make test`: lint, then every test, with the Cassandra node and the three-node cluster up
# (scripts/with_cassandra.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory lint
JUBAO_WITH_CLUSTER=1 bash scripts/with_cassandra.sh .venv/bin/pytest -q -p no:cacheprovider --durations=25 "$@"
