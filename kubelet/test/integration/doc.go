// Package integration runs the kubelet's pod workers, PLEG and status
// manager against a real containerd (its CRI plugin, runc, CNI bridge) that
// the test starts privately, with client-go's fake clientset as API server.
// Run by `make test-kubelet-integration`; skipped without root, the
// artifacts' binaries, or NODESUITE_KUBELET_IT=1.
package integration
