# Apache Cassandra for development and tests (jars from Maven Central, no Docker): the single node
# (127.0.0.1:9042) and a cluster of three (127.0.0.1-3:9142, replication factor 3), side by side.
# Included by the top-level Makefile; standalone use: make -f mk/cassandra.mk cassandra-up
# Details and env knobs (JUBAO_CASSANDRA_CACHE, _HEAP_MIN/_MAX, _PORT, ...): scripts/cassandra/node.py
# Scripts that need the node's state call `scripts/cassandra/node.py status` (exit 0 answering, 1 running
# but not answering, 3 not running); `make cassandra-status` reports it and exits 0 when it is not running.

CASSANDRA_PYTHON ?= python3
CASSANDRA_NODE = $(CASSANDRA_PYTHON) scripts/cassandra/node.py
CASSANDRA_LOG_LINES ?= 80

.PHONY: cassandra-fetch cassandra-up cassandra-down cassandra-status cassandra-logs
.PHONY: cassandra-cluster-up cassandra-cluster-down cassandra-cluster-status cassandra-cluster-logs

cassandra-fetch: ## download Cassandra's jars from Maven Central into the cache (once)
	$(CASSANDRA_NODE) fetch

cassandra-up: ## start the local Cassandra node and wait until CQL answers on 127.0.0.1:9042
	$(CASSANDRA_NODE) up

cassandra-down: ## stop the local Cassandra node
	$(CASSANDRA_NODE) down

cassandra-status: ## say whether the node runs; fails only when it runs but CQL does not answer
	@$(CASSANDRA_NODE) status || [ $$? -eq 3 ]

cassandra-logs: ## tail of var/cassandra/logs/system.log and stdout.log
	$(CASSANDRA_NODE) logs --lines $(CASSANDRA_LOG_LINES)

cassandra-cluster-up: ## start the three-node cluster (127.0.0.1-3:9142) one node after another
	$(CASSANDRA_NODE) cluster up

cassandra-cluster-down: ## stop the cluster's nodes
	$(CASSANDRA_NODE) cluster down

cassandra-cluster-status: ## each node's state and the peers it knows; exits 0 when none runs
	@$(CASSANDRA_NODE) cluster status || [ $$? -eq 3 ]

cassandra-cluster-logs: ## tail of each node's system.log and stdout.log
	$(CASSANDRA_NODE) cluster logs --lines $(CASSANDRA_LOG_LINES)
