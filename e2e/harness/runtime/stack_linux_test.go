package runtime

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
)

// TestStackStartStop starts a real private containerd with its CRI, then
// kills it the hard way and checks Cleanup leaves nothing behind. It needs
// root and the built runtime stack (make artifacts); without them it skips.
func TestStackStartStop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	b, err := artifacts.NewBuilder(zap.NewNop(), "", "")
	if err != nil {
		t.Skip(err)
	}
	for _, name := range []string{"containerd", "runc", "cni"} {
		c, _ := artifacts.Lookup(name)
		if fresh, err := b.Fresh(c); err != nil || !fresh {
			t.Skipf("needs %s built (make artifacts)", name)
		}
	}
	dir, err := os.MkdirTemp("/tmp", "artifacts-t-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	const bridge = "nsart-t0"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, zap.NewNop(), Options{
		Dir: dir, Runtime: Containerd, Artifacts: b.Paths(),
		Bridge: bridge, Subnet: "10.251.9.0/24",
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.CRISocket != s.Layout.ContainerdSocket() {
		t.Errorf("CRISocket %s, want containerd's %s", s.CRISocket, s.Layout.ContainerdSocket())
	}
	// A crashed run: containerd killed, Stop never called. Cleanup from
	// scratch must still stop nothing-but-ours and remove the state.
	pid := s.procs[0].cmd.Process.Pid
	if err := Cleanup(ctx, zap.NewNop(), dir, bridge); err != nil {
		t.Fatal(err)
	}
	<-s.procs[0].done
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop after Cleanup: %v", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if cmdlineMentions(pid, dir) {
		t.Errorf("containerd %d still running", pid)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != "logs" {
		t.Errorf("left in %s: %v, want only logs", dir, left)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mounts under %s remain", dir)
	}
	if _, err := net.InterfaceByName(bridge); err == nil {
		t.Errorf("bridge %s remains", bridge)
	}
	if _, err := Start(ctx, zap.NewNop(), Options{Dir: "relative", Runtime: Containerd}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("relative dir: %v, want ErrInvalidOptions", err)
	}
}
