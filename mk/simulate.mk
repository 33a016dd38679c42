# The ledger simulation (tests/ledger/simulation.py) at length, on SQLite, the local Cassandra node and memory.
# Included by the top-level Makefile (it needs its `venv` target).
#   make simulate                              5000 operations per backend, a random seed
#   JUBAO_SIM_SEED=<seed> make simulate        replay the seed a failed run printed
#   JUBAO_SIM_OPS=<n> make simulate            another length (`make test` runs 300)

.PHONY: simulate

simulate: venv ## run the ledger simulation: random clients, faults, kills; audit and reconcile at the end
	JUBAO_SIM_OPS=$${JUBAO_SIM_OPS:-5000} bash scripts/with_cassandra.sh .venv/bin/pytest -q tests/ledger/test_simulation.py
