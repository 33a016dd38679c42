# The ledger simulation (tests/ledger/simulation.py) at length: 1,000,000 operations on the memory backend
# on simulated time (exact replays), shorter runs on SQLite and the local Cassandra node on the real clock.
# Included by the top-level Makefile (it needs its `venv` target).
#   make simulate                              a random seed; the seed and the trace hash are printed
#   JUBAO_SIM_SEED=<seed> make simulate        replay the seed a failed run printed
#   JUBAO_SIM_VIRTUAL_OPS=<n> make simulate    another length on simulated time (`make test` runs 300)
#   JUBAO_SIM_OPS=<n> make simulate            another length on SQLite and Cassandra (`make test` runs 300)

.PHONY: simulate

simulate: venv ## run the ledger simulation: random clients, faults, kills; audit and reconcile at the end
	JUBAO_SIM_VIRTUAL_OPS=$${JUBAO_SIM_VIRTUAL_OPS:-1000000} JUBAO_SIM_OPS=$${JUBAO_SIM_OPS:-5000} \
		bash scripts/with_cassandra.sh .venv/bin/pytest -q -rA -p no:cacheprovider \
		tests/ledger/test_simulation.py::test_simulation_on_simulated_time \
		tests/ledger/test_simulation.py::test_simulation
