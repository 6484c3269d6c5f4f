# The kubelet's targets (owner: the kubelet engineer). See ../shared/DESIGN.md.
.PHONY: test-kubelet-integration

## test-kubelet-integration: our pod workers against a private containerd
## (CRI, runc, CNI bridge kubeletit0 on 10.88.66.0/24) under /tmp/kubeletit-*;
## needs root and the artifacts' containerd/runc/CNI, skips cleanly without them.
test-kubelet-integration:
	cd kubelet && NODESUITE_KUBELET_IT=1 go test -count=1 -timeout 6m ./test/integration/

TEST_TARGETS += test-kubelet-integration
