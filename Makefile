# jubao: `make run` starts the service with demo tenants; `make test` installs and runs every test.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INSTALL_INPUTS := pyproject.toml clients/python/pyproject.toml requirements/constraints.txt

.PHONY: help venv run test lint format proto proto-check bench bench-full cassandra-test clean java-client

help:
	@echo "make run    start jubao on 127.0.0.1:50051 (embedded SQLite, demo tenants)"
	@echo "make test   install everything and run lint + all tests (starts Cassandra when Java is present)"
	@echo "make lint   ruff, mypy, buf lint      make proto   regenerate protobuf code"
	@echo "make bench  write loadtest/results/latest.json (and the double11 find-peak plots)"
	@echo "make double11 / find-peak   the Double 11 load scenario, checked; LOADTEST_ARGS='--endpoint ...'"
	@echo "make chaos  nodes and servers killed under Double 11 load on the cluster; CHAOS_ARGS=--short"
	@echo "make cassandra-up / cassandra-down / cassandra-status / cassandra-logs"
	@echo "make cassandra-cluster-up / -down / -status / -logs   three nodes on 127.0.0.1-3:9142"
	@echo "make grpcurl / ghz   install the pinned Go tools into var/tools/bin (needs Go)"
	@echo "make java-client     build clients/java (stubs generated from protos/ by Maven; needs JDK 17 + Maven)"

venv: $(STAMP)

$(STAMP): $(INSTALL_INPUTS)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c requirements/constraints.txt -e clients/python -e '.[dev]'
	touch $(STAMP)

# The co-creation demo (运费险) is seeded with 100,000 orders to keep start-up quick; the full size is
# `scripts/cocreation_demo.py` (1,000,000 orders, 200,000 policies).
run: venv
	JUBAO_COCREATION__DEMO_ORDERS=$${JUBAO_COCREATION__DEMO_ORDERS:-100000} $(VENV)/bin/jubao-server serve --banner tenants/demo-keys.txt

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/buf lint

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

proto: venv
	$(PYTHON) scripts/gen_protos.py

test: venv
	bash scripts/test.sh

java-client:
	mvn -B -q -Dstyle.color=never -f clients/java/pom.xml package

bench: venv ghz
	bash scripts/with_cassandra.sh $(PYTHON) -m loadtest bench --quick

bench-full: venv ghz
	bash scripts/with_cassandra.sh $(PYTHON) -m loadtest bench --full

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

include mk/cassandra.mk
include mk/simulate.mk
include mk/loadtest.mk
include mk/tools.mk
