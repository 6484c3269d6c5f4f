# Artifacts engineer's targets: upstream binaries and images built from the Go
# module proxy into $(NODESUITE_CACHE) (default /var/cache/nodesuite), and
# critest against a private runtime stack. Logic: e2e/harness/{artifacts,images,runtime}.

ARTIFACTS_CLI := $(BIN)/artifacts
CRITEST_ARGS  ?=

.PHONY: artifacts artifacts-cli artifacts-images e2e.test critest critest-compare runtime-shim-bin

# The CLI is rebuilt every time (the Go build cache makes that a link step)
# so it never runs stale code.
artifacts-cli:
	@mkdir -p $(BIN)
	@cd e2e && go build -o $(ARTIFACTS_CLI) ./cmd/artifacts

## artifacts: every binary `make up` and critest need, and every image
artifacts: artifacts-cli
	@$(ARTIFACTS_CLI) build
	@$(ARTIFACTS_CLI) images >/dev/null

## e2e.test: the Kubernetes conformance binary (large; not part of `artifacts`)
e2e.test: artifacts-cli
	@$(ARTIFACTS_CLI) build e2e.test

runtime-shim-bin:
	@mkdir -p $(BIN)
	@cd runtime-shim && go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/runtime-shim ./cmd/runtime-shim

## critest: critest v1.37.0 against a private stack, RUNTIME=containerd|ours
critest: artifacts-cli $(if $(filter ours,$(RUNTIME)),runtime-shim-bin)
	@$(ARTIFACTS_CLI) critest --runtime $(RUNTIME) --shim $(BIN)/runtime-shim $(if $(CRITEST_ARGS),-- $(CRITEST_ARGS))

## critest-compare: critest against containerd and ours; prints the specs only ours fails
critest-compare: artifacts-cli runtime-shim-bin
	@$(ARTIFACTS_CLI) critest-compare --shim $(BIN)/runtime-shim $(if $(CRITEST_ARGS),-- $(CRITEST_ARGS))

# CI: critest against containerd's own CRI and against our runtime-shim in
# one run (the integration test of the artifacts, images and runtime packages,
# and the runtime-shim's acceptance gate): fails when ours passes fewer specs
# than containerd or fails one containerd passes. ~5 minutes warm; a cold
# cache first builds the runtime stack (~15 minutes).
.PHONY: test-critest-containerd test-critest-compare
test-critest-containerd:
	@$(MAKE) --no-print-directory critest RUNTIME=containerd
test-critest-compare:
	@$(MAKE) --no-print-directory critest-compare
TEST_TARGETS += test-critest-compare
