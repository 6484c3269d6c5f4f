package kubeletcompat

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
)

// node is the local cluster's node, whose kubelet the tests swap.
type node struct {
	repo   string
	layout cluster.Layout
}

// localNode skips unless the tests were asked for (they replace the local
// cluster's kubelet) and the local cluster runs a kubelet.
func localNode(t *testing.T) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("kubelet compat: skipped in -short mode")
	}
	if os.Getenv("NODESUITE_KUBELET_COMPAT") != "1" {
		t.Skip("kubelet compat: swaps the local cluster's kubelet; set NODESUITE_KUBELET_COMPAT=1 (make test-kubelet-compat) to run")
	}
	repo, err := artifacts.FindRepo()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{repo: repo, layout: cluster.NewLayout(repo)}
	if n.current(t) == "" {
		t.Fatalf("NODESUITE_KUBELET_COMPAT=1 but no local cluster (no kubelet in %s)", n.layout.State())
	}
	return n
}

// current is the kubelet the node runs now.
func (n *node) current(t *testing.T) cluster.Choice {
	t.Helper()
	st, err := cluster.LoadState(n.layout.State())
	if err != nil {
		t.Fatal(err)
	}
	return st.Kubelet
}

// oursAvailable says why our kubelet cannot be used, or "".
func (n *node) oursUnavailable() string {
	if err := (cluster.Options{Kubelet: cluster.Ours, RepoRoot: n.repo}).CheckOurs(nil); err != nil {
		return err.Error()
	}
	return ""
}

// swap replaces the kubelet with to's and waits until the new one has
// renewed the node's Lease and the Node is Ready.
func (n *node) swap(t *testing.T, ctx context.Context, c kubernetes.Interface, to cluster.Choice) {
	t.Helper()
	start := time.Now()
	sw, err := cluster.SwapKubelet(ctx, zaptest.NewLogger(t), n.layout, n.repo, artifacts.CacheRoot(), to, 30*time.Second)
	if err != nil {
		t.Fatalf("swap kubelet to %s: %v", to, err)
	}
	t.Logf("kubelet swapped: %s -> %s (%s)", sw.Old.Path, sw.New.Path, time.Since(start).Round(time.Millisecond))
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 1 {
			last = "node list"
			return false, nil
		}
		nd := nodes.Items[0]
		lease, err := c.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, nd.Name, metav1.GetOptions{})
		if err != nil || lease.Spec.RenewTime == nil || !lease.Spec.RenewTime.After(start) {
			last = "lease not renewed since the swap"
			return false, nil
		}
		for _, cond := range nd.Status.Conditions {
			if cond.Type == v1.NodeReady {
				last = "node Ready=" + string(cond.Status)
				return cond.Status == v1.ConditionTrue, nil
			}
		}
		last = "no Ready condition"
		return false, nil
	})
	if err != nil {
		t.Fatalf("after swapping to %s: %s: %v", to, last, err)
	}
}
