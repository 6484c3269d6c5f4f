package cm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDetectLayout: v1 hierarchies are the mount root's directories, not
// the symlinks to them or other files; v2 is the root with its controllers.
func TestDetectLayout(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cpu", "cpuacct", "memory", "net_cls,net_prio"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("net_cls,net_prio", filepath.Join(root, "net_cls")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "README"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := detectLayout(osFS{}, root)
	if err != nil {
		t.Fatal(err)
	}
	want := &layout{hiers: []hierarchy{
		{dir: filepath.Join(root, "cpu"), controllers: map[string]bool{"cpu": true}},
		{dir: filepath.Join(root, "cpuacct"), controllers: map[string]bool{"cpuacct": true}},
		{dir: filepath.Join(root, "memory"), controllers: map[string]bool{"memory": true}},
		{dir: filepath.Join(root, "net_cls,net_prio"), controllers: map[string]bool{"net_cls": true, "net_prio": true}},
	}}
	if d := cmp.Diff(want, l, cmp.AllowUnexported(layout{}, hierarchy{})); d != "" {
		t.Errorf("v1 layout (-want +got):\n%s", d)
	}

	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = detectLayout(osFS{}, root)
	if err != nil {
		t.Fatal(err)
	}
	want = &layout{v2: true, rootControllers: []string{"cpu", "memory", "pids"},
		hiers: []hierarchy{{dir: root, controllers: map[string]bool{"cpu": true, "memory": true, "pids": true}}}}
	if d := cmp.Diff(want, l, cmp.AllowUnexported(layout{}, hierarchy{})); d != "" {
		t.Errorf("v2 layout (-want +got):\n%s", d)
	}

	if _, err := detectLayout(osFS{}, t.TempDir()); err == nil {
		t.Error("an empty mount root is no layout")
	}
}

func TestSameValue(t *testing.T) {
	for _, tc := range []struct {
		file, have, want string
		same             bool
	}{
		{"cpu.shares", "1024\n", "1024", true},
		{"cpu.shares", "1024\n", "1025", false},
		{"cpu.max", "max 100000\n", "max 100000", true},
		{"memory.limit_in_bytes", "199999488\n", "200000000", true}, // whole pages
		{"memory.limit_in_bytes", "199995392\n", "200000000", false},
		{"memory.max", "max\n", "200000000", false},
		{"memory.max", "max\n", "max", true},
		{"hugetlb.2MB.limit_in_bytes", "4194304\n", "5000000", true}, // whole huge pages
		{"hugetlb.1GB.max", "0\n", "5000000", true},
		{"hugetlb.1GB.max", "0\n", "1073741824", false},
		{"pids.max", "max\n", "1024", false},
	} {
		if got := sameValue(tc.file, tc.have, tc.want); got != tc.same {
			t.Errorf("sameValue(%s, %q, %q) = %v", tc.file, tc.have, tc.want, got)
		}
	}
}
