# Go tools, pinned, installed with `go install` (from the Go module proxy) into var/tools/bin, once.
# Included by the top-level Makefile.
#   make grpcurl   grpcurl, to call the API by reflection (README "Try it"); needs Go
#   make ghz       ghz, the Go gRPC load tool of the bench's cross-check; without Go the bench leaves it out

TOOLS_BIN := var/tools/bin
GRPCURL_VERSION := v1.9.4
GHZ_VERSION := v0.93.0
GRPCURL := $(TOOLS_BIN)/grpcurl
GHZ := $(TOOLS_BIN)/ghz

# $(call go_install,PACKAGE@VERSION,what happens without Go,exit status without Go)
define go_install
	@if command -v go >/dev/null; then \
	  echo "installing $(1) into $(TOOLS_BIN) (go install, about two minutes the first time)"; \
	  GOBIN=$(abspath $(TOOLS_BIN)) go install $(1); \
	else \
	  echo "!!! go not found (install Go 1.22 or later): $(2)" >&2; exit $(3); \
	fi
endef

.PHONY: grpcurl ghz

grpcurl: $(GRPCURL) ## install grpcurl into var/tools/bin

ghz: $(GHZ) ## install ghz into var/tools/bin, for the bench's cross-check

$(GRPCURL):
	$(call go_install,github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION),grpcurl is not installed,1)

$(GHZ):
	$(call go_install,github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION),the bench leaves ghz_empty_rpc_per_s out,0)
