# The load-test harness (loadtest/): the double11 scenario, find-peak, and ghz for the bench's cross-check.
# Included by the top-level Makefile (it needs its `venv` target and PYTHON).
#   make double11                                   the double11 scenario on a server started on SQLite
#   make find-peak                                  its highest rate within p99 50 ms and 0.1 % errors
#   LOADTEST_SCENARIO=double11_short make double11  another scenario (a name in loadtest/scenarios, or a file)
#   LOADTEST_ARGS='--endpoint HOST:PORT --api-key KEY --workers 4' make double11   against a running server
# Reports (JSON and PNG) go to loadtest/results/; a lost or duplicated payment fails the target.

GHZ_VERSION := v0.93.0
GHZ := var/tools/bin/ghz
LOADTEST_SCENARIO ?= double11
LOADTEST_ARGS ?=

.PHONY: double11 find-peak ghz

double11: venv ## run the double11 scenario, check the ledger against the tally, report under loadtest/results/
	$(PYTHON) -m loadtest run --scenario $(LOADTEST_SCENARIO) $(LOADTEST_ARGS)

find-peak: venv ## step the double11 mix's rate up to the highest one within its p99 and error bounds
	$(PYTHON) -m loadtest find-peak --scenario $(LOADTEST_SCENARIO) $(LOADTEST_ARGS)

ghz: $(GHZ) ## install ghz (the Go gRPC load tool) into var/tools/bin, for the bench's cross-check

$(GHZ):
	@if command -v go >/dev/null; then \
	  echo "installing ghz $(GHZ_VERSION) into $(dir $(GHZ))"; \
	  GOBIN=$(abspath $(dir $(GHZ))) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION); \
	else \
	  echo "!!! go not found: ghz is not installed, the bench leaves ghz_empty_rpc_per_s out" >&2; \
	fi
