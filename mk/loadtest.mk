# The load-test harness (loadtest/): the double11 scenario and find-peak (ghz, for the bench's cross-check,
# is installed by mk/tools.mk). Included by the top-level Makefile (it needs its `venv` target and PYTHON).
#   make double11                                   the double11 scenario on a server started on SQLite
#   make find-peak                                  its highest rate within p99 50 ms and 0.1 % errors
#   LOADTEST_SCENARIO=double11_short make double11  another scenario (a name in loadtest/scenarios, or a file)
#   LOADTEST_ARGS='--endpoint HOST:PORT --api-key KEY --workers 4' make double11   against a running server
#   make chaos                                      the double11 mix on two servers on the three-node cluster
#                                                   under a fault schedule (CHAOS_ARGS=--short: ~3 minutes)
#   make profile                                    the quick bench with a py-spy profile of the server per load
#   BENCH_ARGS='--only payments_transfer_batch_per_s --backend sqlite' make profile   one figure of it
# Reports (JSON and PNG) go to loadtest/results/, profiles to loadtest/results/profiles/ (<load>.top.txt:
# the frames that bound it); a lost or duplicated payment fails the target. py-spy needs ptrace rights on
# the server processes: CI does not run it.

LOADTEST_SCENARIO ?= double11
LOADTEST_ARGS ?=
CHAOS_ARGS ?=
BENCH_ARGS ?=

.PHONY: double11 find-peak chaos noisy-neighbour profile

double11: venv ## run the double11 scenario, check the ledger against the tally, report under loadtest/results/
	$(PYTHON) -m loadtest run --scenario $(LOADTEST_SCENARIO) $(LOADTEST_ARGS)

find-peak: venv ## step the double11 mix's rate up to the highest one within its p99 and error bounds
	$(PYTHON) -m loadtest find-peak --scenario $(LOADTEST_SCENARIO) $(LOADTEST_ARGS)

chaos: venv ## kill and pause Cassandra nodes and servers under the double11 mix; check nothing lost (cluster)
	$(PYTHON) -m loadtest chaos $(CHAOS_ARGS)

noisy-neighbour: venv ## one tenant floods far above its quota beside another's double11 load (cluster)
	$(PYTHON) -m loadtest noisy $(CHAOS_ARGS)

profile: venv ## the quick bench (or BENCH_ARGS' part of it) with py-spy profiles into loadtest/results/profiles/
	$(PYTHON) -m pip install --quiet py-spy==0.4.3
	PATH=$(VENV)/bin:$$PATH bash scripts/with_cassandra.sh $(PYTHON) -m loadtest bench --quick \
		--profile loadtest/results/profiles $(BENCH_ARGS)
