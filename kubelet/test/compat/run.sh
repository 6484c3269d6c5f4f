#!/bin/bash
# Runs the kubelet compat tests or the kubelet bench on a local cluster it
# brings up (upstream kubelet, containerd's CRI, kube-proxy; no demo) and
# always takes down. The tests and the bench swap the node's kubelet
# between upstream and ours themselves (nodesuite-cluster swap-kubelet).
#
#   run.sh test   # e2e/tests/kubeletcompat (restart/switch and status diff)
#   run.sh bench  # e2e/bench/kubelet (start latency and RSS, ours/upstream)
#
# The caller holds the cluster lock (flock /run/nodesuite-cluster.lock make ...).
# Needs _output/bin/nodesuite-cluster and _output/bin/kubelet (make
# cluster-cli build). The cluster's logs are copied to
# _output/kubelet-compat/logs-<what> before down.
set -euo pipefail
what=${1:?usage: run.sh test|bench}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cli=$root/_output/bin/nodesuite-cluster
keep=$root/_output/kubelet-compat
mkdir -p "$keep"

down() {
	rm -rf "$keep/logs-$what"
	cp -r "$root/_output/cluster/logs" "$keep/logs-$what" 2>/dev/null || true
	"$cli" down --repo "$root"
}
trap down EXIT
bash "$root/hack/deps.sh"
"$cli" up --repo "$root" --kubelet upstream --runtime containerd --proxy upstream --no-demo

cd "$root/e2e"
case $what in
test)
	NODESUITE_KUBELET_COMPAT=1 go test -count=1 -timeout 25m -v ./tests/kubeletcompat/
	;;
bench)
	go run ./bench/kubelet ${KUBELET_BENCH_FLAGS:-}
	;;
*)
	echo "run.sh: unknown $what (want test or bench)" >&2
	exit 2
	;;
esac
