package cluster

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
)

// These tests change the host (nftables, a bridge, routes, sysctls, and
// for the full one a whole cluster on the well-known ports), so they run
// only when asked: NODESUITE_CLUSTER_INTEGRATION=1, as root (make
// test-cluster-updown).
func needIntegration(t *testing.T) {
	t.Helper()
	if os.Getenv("NODESUITE_CLUSTER_INTEGRATION") != "1" {
		t.Skip("set NODESUITE_CLUSTER_INTEGRATION=1 (as root, no other local cluster running) to run")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// leftovers lists what of a cluster in l is still on the host.
func leftovers(t *testing.T, l Layout) []string {
	t.Helper()
	obs, err := RealHost{}.Observe(l)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range PlanDown(l, &State{}, obs) {
		if a.Kind == RemovePath {
			continue // checked below: only logs may stay
		}
		out = append(out, string(a.Kind)+" "+a.Target)
	}
	entries, _ := os.ReadDir(l.Dir)
	for _, e := range entries {
		if e.Name() != "logs" {
			out = append(out, "file "+filepath.Join(l.Dir, e.Name()))
		}
	}
	if _, err := os.Stat(l.RunDir); err == nil {
		out = append(out, "dir "+l.RunDir)
	}
	routes, _ := exec.Command("ip", "-4", "route", "show").Output()
	for _, line := range strings.Split(string(routes), "\n") {
		if strings.Contains(line, "10.244.") || strings.Contains(line, "10.96.") || strings.Contains(line, BridgeName) {
			out = append(out, "route "+line)
		}
	}
	nets, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(strings.TrimSpace(string(nets)), "\n") {
		if strings.HasPrefix(line, "cni-") {
			out = append(out, "netns "+line)
		}
	}
	if b, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(b), "kube-proxy") || strings.Contains(string(b), GuardTable) {
		out = append(out, "nft "+strings.TrimSpace(string(b)))
	}
	if b, err := exec.Command("iptables-save").Output(); err == nil && strings.Contains(string(b), "KUBE-") {
		out = append(out, "iptables KUBE- chains")
	}
	return out
}

func TestPrepareHostThenDown(t *testing.T) {
	needIntegration(t)
	log := zaptest.NewLogger(t)
	ctx := context.Background()
	// The bridge, guard and cgroup parent are host-wide: a running local
	// cluster goes first, as with up.
	checkout, err := artifacts.FindRepo()
	if err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, log, NewLayout(checkout), RealHost{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	l := NewLayout(repo)
	l.RunDir = "/run/nodesuite-cluster-it"
	st := &State{path: l.State()}
	c := &Cluster{Log: log, Layout: l, State: st}
	if err := c.PrepareHost(ctx); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, l); len(left) == 0 {
		t.Fatal("PrepareHost left nothing to clean up: the check cannot fail")
	}
	if out, err := exec.Command("nft", "list", "table", "inet", GuardTable).CombinedOutput(); err != nil || !strings.Contains(string(out), "drop") {
		t.Errorf("guard table: %v\n%s", err, out)
	}
	if err := Down(ctx, log, l, RealHost{}, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Errorf("left behind after down:\n%s", strings.Join(left, "\n"))
	}
	if err := Down(ctx, log, l, RealHost{}, 5*time.Second); err != nil {
		t.Errorf("second down: %v", err)
	}
}

// TestUpDown brings up the all-upstream cluster with the demo, then down,
// and requires nothing left behind. It uses the real layout of the checkout.
func TestUpDown(t *testing.T) {
	needIntegration(t)
	repo, err := artifacts.FindRepo()
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// The registry runs as the cluster CLI, detached; never this test binary.
	cli := filepath.Join(t.TempDir(), "nodesuite-cluster")
	build := exec.Command("go", "build", "-o", cli, "./cmd/cluster")
	build.Dir = filepath.Join(repo, "e2e")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cluster CLI: %v\n%s", err, out)
	}
	opts := Options{RepoRoot: repo, Kubelet: Upstream, Runtime: Upstream, Proxy: Upstream, RegistryCommand: cli}
	res, err := Up(ctx, log, opts, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Demo == nil || res.Demo.ClusterIPAnswer == "" || res.Demo.NodePortAnswer == "" {
		t.Errorf("demo did not answer: %+v", res.Demo)
	}
	// Safety: addresses in both ranges that no Pod or Service has must
	// still route onto the bridge, never out of the uplink.
	for _, ip := range []string{"10.96.213.7", "10.244.200.9", "10.244.0.250"} {
		routes, err := netlink.RouteGet(net.ParseIP(ip))
		if err != nil || len(routes) == 0 {
			t.Fatalf("route to %s: %v", ip, err)
		}
		ln, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		if ln.Attrs().Name != BridgeName {
			t.Errorf("%s routes via %s, want %s", ip, ln.Attrs().Name, BridgeName)
		}
	}
	l := NewLayout(repo)
	if err := Down(ctx, log, l, RealHost{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, l); len(left) > 0 {
		t.Errorf("left behind after down:\n%s", strings.Join(left, "\n"))
	}
}
