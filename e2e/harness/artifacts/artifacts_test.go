package artifacts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
)

// fakeGo records invocations and, for build/test -c, writes the binaries
// named by -o, so Ensure sees a real result.
type fakeGo struct {
	mu      sync.Mutex
	calls   []string
	srcDir  string // answer of go mod download -json
	fail    string // a component dir whose builds fail
	outputs map[string][]string
}

func (f *fakeGo) Run(_ context.Context, c Cmd) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, filepath.Base(c.Dir)+": go "+c.Args[0])
	if f.fail != "" && filepath.Base(c.Dir) == f.fail {
		return errors.New("exit status 1")
	}
	if c.Args[0] == "mod" {
		fmt.Fprintf(c.Stdout, `{"Path":"x","Dir":%q}`, f.srcDir)
		return nil
	}
	for i, a := range c.Args {
		if a != "-o" {
			continue
		}
		o := c.Args[i+1]
		if strings.HasSuffix(o, "/") {
			// go build -o dir/ pkg...: one binary per package, named by its last element.
			for _, p := range c.Args[i+2:] {
				if err := os.WriteFile(filepath.Join(o, filepath.Base(p)), []byte("bin"), 0o755); err != nil {
					return err
				}
			}
			return nil
		}
		return os.WriteFile(o, []byte("bin"), 0o755)
	}
	return nil
}

func newTestBuilder(t *testing.T, f *fakeGo) *Builder {
	t.Helper()
	repo := t.TempDir()
	for _, c := range Components {
		d := filepath.Join(repo, "tools", c.Module)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "go.mod"), []byte("module x/"+c.Module+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := NewBuilder(zap.NewNop(), t.TempDir(), repo)
	if err != nil {
		t.Fatal(err)
	}
	b.Go = f
	b.Heartbeat = 0
	b.AdoptPoll = time.Millisecond
	b.running = func(string) bool { return false }
	return b
}

func TestResolve(t *testing.T) {
	names := func(cs []Component) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Name)
		}
		return out
	}
	tests := []struct {
		in   []string
		want []string
		err  error
	}{
		{in: nil, want: []string{"runc", "containerd", "cni", "crictl", "critest", "kubernetes", "etcd", "coredns", "testimages"}},
		{in: []string{"kubectl", "containerd-shim-runc-v2", "kubelet"}, want: []string{"containerd", "kubernetes"}},
		{in: []string{"e2e.test"}, want: []string{"e2e.test"}},
		{in: []string{"all"}, want: []string{"runc", "containerd", "cni", "crictl", "critest", "kubernetes", "etcd", "coredns", "testimages", "e2e.test"}},
		{in: []string{"bridge"}, want: []string{"cni"}},
		{in: []string{"nope"}, err: ErrUnknown},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.in...)
		if !errors.Is(err, tt.err) {
			t.Fatalf("Resolve(%v) error %v, want %v", tt.in, err, tt.err)
		}
		if diff := cmp.Diff(tt.want, names(got)); diff != "" {
			t.Errorf("Resolve(%v) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestEnsureColdThenWarm(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "cmd", "critest"), 0o555); err != nil {
		t.Fatal(err)
	}
	f := &fakeGo{srcDir: src}
	b := newTestBuilder(t, f)
	ctx := context.Background()

	a, err := b.Ensure(ctx, "containerd", "cni", "critest")
	if err != nil {
		t.Fatal(err)
	}
	wantCold := []string{
		"containerd: go build",
		"cri-tools: go mod",
		"sigs.k8s.io_cri-tools@" + CRIToolsVersion + ": go test",
		"cni: go build",
	}
	// Resolve orders by the table: containerd, cni, critest.
	wantCold = []string{wantCold[0], wantCold[3], wantCold[1], wantCold[2]}
	if diff := cmp.Diff(wantCold, f.calls); diff != "" {
		t.Errorf("cold calls (-want +got):\n%s", diff)
	}
	var installed []string
	for _, p := range []string{a.Bin("containerd"), a.Bin("containerd-shim-runc-v2"), a.Bin("critest"),
		filepath.Join(a.CNIBinDir, "bridge"), filepath.Join(a.CNIBinDir, "portmap")} {
		if _, err := os.Stat(p); err == nil {
			installed = append(installed, filepath.Base(p))
		}
	}
	if diff := cmp.Diff([]string{"containerd", "containerd-shim-runc-v2", "critest", "bridge", "portmap"}, installed); diff != "" {
		t.Errorf("installed (-want +got):\n%s", diff)
	}

	// Warm: nothing runs.
	f.calls = nil
	if _, err := b.Ensure(ctx, "containerd", "cni", "critest"); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("warm run built %v", f.calls)
	}

	// A changed go.sum rebuilds only that component.
	if err := os.WriteFile(filepath.Join(b.ToolsDir, "cni", "go.sum"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Ensure(ctx, "containerd", "cni"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cni: go build"}, f.calls); diff != "" {
		t.Errorf("after go.sum change (-want +got):\n%s", diff)
	}

	// A deleted binary rebuilds its component.
	f.calls = nil
	if err := os.Remove(a.Bin("containerd-shim-runc-v2")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Ensure(ctx, "containerd"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"containerd: go build"}, f.calls); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
}

func TestEnsureFailureLeavesNoStamp(t *testing.T) {
	f := &fakeGo{fail: "runc"}
	b := newTestBuilder(t, f)
	_, err := b.Ensure(context.Background(), "runc")
	if !errors.Is(err, ErrBuild) {
		t.Fatalf("error %v, want ErrBuild", err)
	}
	if fresh, _ := b.Fresh(Components[0]); fresh {
		t.Error("failed build counted as fresh")
	}
	if _, err := os.Stat(b.Paths().Bin("runc")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed build installed runc: %v", err)
	}
}

func TestAdoptWaitsForRunningBuild(t *testing.T) {
	f := &fakeGo{}
	b := newTestBuilder(t, f)
	warm := filepath.Join(b.Root, "warm")
	if err := os.MkdirAll(warm, 0o755); err != nil {
		t.Fatal(err)
	}
	k, _ := Lookup("kubernetes")
	polls := 0
	// The other build finishes on the third look.
	b.running = func(dir string) bool {
		if dir != warm {
			t.Errorf("looked for a build into %s", dir)
		}
		polls++
		if polls == 3 {
			for _, bin := range k.Binaries {
				_ = os.WriteFile(filepath.Join(warm, bin), []byte("k"), 0o755)
			}
			_ = os.WriteFile(filepath.Join(warm, "build.log"), []byte("compiling\nBUILD-OK\n"), 0o644)
		}
		return true
	}
	a, err := b.Ensure(context.Background(), "kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("adopting ran a second build: %v", f.calls)
	}
	if got, _ := os.ReadFile(a.Bin("kube-apiserver")); string(got) != "k" {
		t.Errorf("kube-apiserver not installed from warm/: %q", got)
	}
}

func TestAdoptBuildsWhenNobodyIs(t *testing.T) {
	f := &fakeGo{}
	b := newTestBuilder(t, f)
	if _, err := b.Ensure(context.Background(), "kubernetes"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kubernetes: go build"}, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	ok, err := logSays(filepath.Join(b.Root, "warm", "build.log"), BuildOK)
	if err != nil || !ok {
		t.Errorf("warm/build.log has no %s: %v", BuildOK, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "CGO_ENABLED=0", "B=2"}, []string{"CGO_ENABLED=1", "GOFLAGS="})
	want := []string{"A=1", "B=2", "CGO_ENABLED=1", "GOFLAGS="}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAdoptRebuildsStaleWarmBuild(t *testing.T) {
	f := &fakeGo{}
	b := newTestBuilder(t, f)
	warm := filepath.Join(b.Root, "warm")
	k, _ := Lookup("kubernetes")
	if err := os.MkdirAll(warm, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bin := range k.Binaries {
		_ = os.WriteFile(filepath.Join(warm, bin), []byte("old"), 0o755)
	}
	_ = os.WriteFile(filepath.Join(warm, "build.log"), []byte("BUILD-OK\n"), 0o644)
	_ = os.WriteFile(filepath.Join(warm, "stamp.json"), []byte(`{"component":"kubernetes","version":"v1.0.0","hash":"x"}`), 0o644)
	if _, err := b.Ensure(context.Background(), "kubernetes"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kubernetes: go build"}, f.calls); diff != "" {
		t.Errorf("a warm build from other inputs was adopted (-want +got):\n%s", diff)
	}
	// Now warm/ is ours and current: a fresh cache adopts it.
	f.calls = nil
	_ = os.Remove(b.stampPath(k))
	if _, err := b.Ensure(context.Background(), "kubernetes"); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("current warm build rebuilt: %v", f.calls)
	}
}
