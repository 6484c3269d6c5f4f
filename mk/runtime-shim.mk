# runtime-shim's targets (owner: the runtime-shim engineer). Logic lives in
# runtime-shim/; these only run its tests.
#   runtime-shim-fuzz         bounded fuzzing of request validation + spec generation
#   runtime-shim-integration  lifecycle + restart against a private real containerd
#                             (root and the artifact cache's binaries; skips without them)

RTSHIM_FUZZTIME ?= 20s

.PHONY: runtime-shim-fuzz runtime-shim-integration

runtime-shim-fuzz:
	@cd runtime-shim && go test -run='^$$' -fuzz=FuzzValidateAndSpec -fuzztime=$(RTSHIM_FUZZTIME) -timeout 5m ./internal/criserver/

runtime-shim-integration:
	@cd runtime-shim && RTSHIM_INTEGRATION=1 go test -count=1 -timeout 10m -v ./internal/integration/

TEST_TARGETS += runtime-shim-fuzz runtime-shim-integration
