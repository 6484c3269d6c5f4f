# The local cluster: make up / down / e2e / test-e2e-local (owner: the
# cluster harness, e2e/harness/cluster and e2e/cmd/cluster).
#   make up KUBELET=ours|upstream RUNTIME=ours|containerd PROXY=ours|upstream
# The CLI is built to a file (not go run) because `up` starts it again
# detached as the image registry, which must outlive `up`.

CLUSTER_BIN := $(OUT)/bin/nodesuite-cluster
KUBECONFIG  ?= $(OUT)/cluster/admin.kubeconfig
UP_FLAGS    ?=

.PHONY: up down e2e test-e2e-local test-e2e-ours cluster-cli test-cluster-updown

cluster-cli:
	@mkdir -p $(OUT)/bin
	@cd e2e && go build -o $(CLUSTER_BIN) ./cmd/cluster

## up: a local single-node cluster with the demo workload answering
up: cluster-cli build
	@bash hack/deps.sh
	@$(CLUSTER_BIN) up --repo $(ROOT) --kubelet $(KUBELET) --runtime $(RUNTIME) --proxy $(PROXY) $(UP_FLAGS)

## down: stop and remove everything up started (idempotent)
down: cluster-cli
	@$(CLUSTER_BIN) down --repo $(ROOT)

## e2e: the e2e suite against $(KUBECONFIG) (default: the local cluster)
## (E2E_ON_NODE=1 when it is the local cluster: the tests then dial Service
## and node addresses from this host, as a process on the node would.)
e2e: E2E_ON_NODE ?= $(if $(filter $(OUT)/cluster/admin.kubeconfig,$(KUBECONFIG)),1,)
e2e:
	cd e2e && E2E_ON_NODE=$(E2E_ON_NODE) KUBECONFIG=$(KUBECONFIG) go test -count=1 -timeout 40m ./tests/...

## test-e2e-local: up (all upstream unless overridden) -> e2e -> down, down always
test-e2e-local: E2E_KUBELET ?= upstream
test-e2e-local: E2E_RUNTIME ?= containerd
test-e2e-local: E2E_PROXY ?= upstream
test-e2e-local: cluster-cli
	@bash hack/deps.sh
	@trap '$(CLUSTER_BIN) down --repo $(ROOT)' EXIT; \
	  $(CLUSTER_BIN) up --repo $(ROOT) --kubelet $(E2E_KUBELET) --runtime $(E2E_RUNTIME) --proxy $(E2E_PROXY) $(UP_FLAGS) && \
	  $(MAKE) --no-print-directory e2e KUBECONFIG=$(OUT)/cluster/admin.kubeconfig

## test-cluster-updown: the harness's own integration tests, as root: host
## preparation then down, and a whole all-upstream up (with the demo) then
## down, each requiring that nothing is left behind. Stops a running local
## cluster first (up replaces it).
test-cluster-updown:
	cd e2e && NODESUITE_CLUSTER_INTEGRATION=1 go test -count=1 -timeout 25m -v -run 'TestPrepareHostThenDown|TestUpDown' ./harness/cluster/

## test-e2e-ours: the same suite on a node that runs every daemon of ours the
## harness offers (those with a READY_FOR_HARNESS marker), upstream for the rest.
test-e2e-ours: build
	@$(MAKE) --no-print-directory test-e2e-local \
	  E2E_KUBELET=$(if $(wildcard kubelet/READY_FOR_HARNESS),ours,upstream) \
	  E2E_RUNTIME=$(if $(wildcard runtime-shim/READY_FOR_HARNESS),ours,containerd) \
	  E2E_PROXY=$(if $(wildcard proxy/READY_FOR_HARNESS),ours,upstream)

# CI: the harness's up -> demo -> down -> nothing-left check (about 1 min on
# a warm cache), then the e2e suite on the all-upstream baseline and on the
# node with ours where ours exist.
TEST_TARGETS += test-cluster-updown test-e2e-local test-e2e-ours

.PHONY: test-controlplane
## test-controlplane: a control plane on free ports beside anything else
## (package controlplane, used by the proxy and kubelet integration tests and benchmarks)
test-controlplane:
	cd e2e && NODESUITE_CONTROLPLANE_IT=1 go test -count=1 -timeout 5m ./harness/controlplane/
TEST_TARGETS += test-controlplane
