# runtime-shim's targets (owner: the runtime-shim engineer). Logic lives in
# runtime-shim/; these only run its tests.
#   runtime-shim-fuzz         bounded fuzzing of request validation + spec generation
#   runtime-shim-integration  lifecycle + restart against a private real containerd
#                             (root and the artifact cache's binaries; skips without them)
#   bench-runtime-shim        cribench: CRI operations on ours and on containerd's own
#                             CRI, two private runtime stacks up at once, ratios per op

RTSHIM_FUZZTIME ?= 20s

RTSHIM_BENCH_FLAGS ?= --rounds 60 --background 10

.PHONY: runtime-shim-fuzz runtime-shim-integration bench-runtime-shim

runtime-shim-fuzz:
	@cd runtime-shim && go test -run='^$$' -fuzz=FuzzValidateAndSpec -fuzztime=$(RTSHIM_FUZZTIME) -timeout 5m ./internal/criserver/

runtime-shim-integration:
	@cd runtime-shim && RTSHIM_INTEGRATION=1 go test -count=1 -timeout 10m -v ./internal/integration/

TEST_TARGETS += runtime-shim-fuzz runtime-shim-integration

bench-runtime-shim: artifacts-cli runtime-shim-bin
	@cd runtime-shim && go build -o $(BIN)/cribench ./cmd/cribench
	@runtime-shim/test/bench.sh $(ARTIFACTS_CLI) $(BIN)/runtime-shim $(BIN)/cribench $(RTSHIM_BENCH_FLAGS)

BENCH_TARGETS += bench-runtime-shim

## test-e2e-runtime: the e2e suite on a local cluster whose runtime is our
## runtime-shim beside the upstream kubelet and kube-proxy (issue 4's combination).
.PHONY: test-e2e-runtime
test-e2e-runtime: build
	@$(MAKE) --no-print-directory test-e2e-local E2E_KUBELET=upstream E2E_RUNTIME=ours E2E_PROXY=upstream

TEST_TARGETS += test-e2e-runtime
