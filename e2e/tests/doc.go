// Package tests is the e2e suite: Go tests that need only a kubeconfig
// ($KUBECONFIG, default ../_output/cluster/admin.kubeconfig beside the e2e
// module), so they run unchanged against the local cluster, kind, or any
// conformant cluster. Without a reachable default cluster they skip; with an
// explicit KUBECONFIG that does not answer they fail.
package tests
