#!/usr/bin/env bash
# `make test`: lint, then every test, with the Cassandra node up (scripts/with_cassandra.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
make --no-print-directory lint
bash scripts/with_cassandra.sh .venv/bin/pytest -q -p no:cacheprovider "$@"
