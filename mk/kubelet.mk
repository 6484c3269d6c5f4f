# The kubelet's targets (owner: the kubelet engineer). See ../shared/DESIGN.md.
.PHONY: test-kubelet-integration

## test-kubelet-integration: our pod workers against a private containerd
## (CRI, runc, CNI bridge kubeletit0 on 10.88.66.0/24) under /tmp/kubeletit-*;
## needs root and the artifacts' containerd/runc/CNI, skips cleanly without them.
test-kubelet-integration:
	cd kubelet && NODESUITE_KUBELET_IT=1 go test -count=1 -timeout 6m ./test/integration/

## test-e2e-kubelet: the e2e suite on a local cluster whose kubelet is ours
## (containerd's CRI and kube-proxy beside it); up -> e2e -> down. Run it
## under the cluster lock: flock /run/nodesuite-cluster.lock make test-e2e-kubelet
.PHONY: test-e2e-kubelet
test-e2e-kubelet: build
	@$(MAKE) --no-print-directory test-e2e-local E2E_KUBELET=ours E2E_RUNTIME=containerd E2E_PROXY=upstream

TEST_TARGETS += test-kubelet-integration test-e2e-kubelet

# --- engineer #2 ---
# Ours against the upstream kubelet on a local cluster (needs root, the
# artifacts and the cluster lock: flock /run/nodesuite-cluster.lock make ...).
.PHONY: test-kubelet-compat bench-kubelet

## test-kubelet-compat: up (upstream kubelet) -> restart/switch the kubelet
## with 30 Pods (no container restarts) and the status + Events diff of
## upstream vs ours (e2e/tests/kubeletcompat) -> down, down always.
test-kubelet-compat: cluster-cli build
	@bash kubelet/test/compat/run.sh test

## bench-kubelet: Pod start latency p50/p99 (1 Pod x20, burst of 50) and
## kubelet RSS (idle, 50 Pods), ours vs upstream on the same node in one
## run, printed as ratios (e2e/bench/kubelet); it also logs each kubelet's
## RssAnon/RssFile and prints the CPU-s each command used during the burst
## (the node's processes vs other work on the machine). KUBELET_BENCH_FLAGS
## passes e.g. -single=5 -burst=10, -rounds=2 (upstream/ours alternating,
## ABBA, pooled), or -profiles=DIR to save both kubelets' heap profiles.
bench-kubelet: cluster-cli build
	@bash kubelet/test/compat/run.sh bench

BENCH_TARGETS += bench-kubelet
# Green twice in a row on the session-3 code (~5 min each with up/down).
TEST_TARGETS += test-kubelet-compat
