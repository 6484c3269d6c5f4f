package cm

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeKernel is cgroupfs under a temp dir as far as the manager can tell:
// mkdir makes the interface files of the hierarchy's (v1) or the parent's
// enabled (v2) controllers with the kernel's defaults, writes only replace
// existing files and round byte limits as the kernel does, subtree_control
// takes "+ctrl" and populates the children, and rmdir is EBUSY while tasks
// or child cgroups remain.
type fakeKernel struct {
	osFS
	root   string
	v2     bool
	writes []string // "<file relative to root>=<value>", in order
	// fail makes the next write of a file (relative to root) fail.
	fail map[string]error
	// refuse are controllers subtree_control never takes (v2).
	refuse map[string]bool
}

const v1Unlimited = "9223372036854771712"

// v2Controllers is the root's cgroup.controllers, in the kernel's order.
var v2Controllers = []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids"}

var v1Defaults = map[string]map[string]string{
	"cpu":     {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
	"memory":  {"memory.limit_in_bytes": v1Unlimited},
	"pids":    {"pids.max": "max"},
	"cpuset":  {"cpuset.cpus": "", "cpuset.mems": ""},
	"hugetlb": {"hugetlb.2MB.limit_in_bytes": v1Unlimited, "hugetlb.2MB.rsvd.limit_in_bytes": v1Unlimited, "hugetlb.1GB.limit_in_bytes": v1Unlimited, "hugetlb.1GB.rsvd.limit_in_bytes": v1Unlimited},
}

var v2Defaults = map[string]map[string]string{
	"cpu":     {"cpu.weight": "100", "cpu.max": "max 100000"},
	"memory":  {"memory.max": "max", "memory.high": "max", "memory.low": "0", "memory.min": "0"},
	"pids":    {"pids.max": "max"},
	"cpuset":  {"cpuset.cpus": "", "cpuset.mems": ""},
	"hugetlb": {"hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max", "hugetlb.1GB.max": "max", "hugetlb.1GB.rsvd.max": "max"},
}

func (k *fakeKernel) rel(p string) string {
	r, err := filepath.Rel(k.root, p)
	if err != nil {
		panic(err)
	}
	return r
}

func (k *fakeKernel) Mkdir(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), nil, 0o644); err != nil {
		return err
	}
	if !k.v2 {
		hier := strings.Split(k.rel(dir), string(filepath.Separator))[0]
		return k.addFiles(dir, strings.Split(hier, ","))
	}
	enabled, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	ctrls := strings.Fields(string(enabled))
	for f, v := range map[string]string{"cgroup.controllers": strings.Join(ctrls, " "), "cgroup.subtree_control": ""} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
			return err
		}
	}
	return k.addFiles(dir, ctrls)
}

func (k *fakeKernel) addFiles(dir string, ctrls []string) error {
	defaults := v1Defaults
	if k.v2 {
		defaults = v2Defaults
	}
	for _, c := range ctrls {
		for f, v := range defaults[c] {
			p := filepath.Join(dir, f)
			if _, err := os.Stat(p); err == nil {
				continue
			}
			if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *fakeKernel) Rmdir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return &os.PathError{Op: "rmdir", Path: dir, Err: unix.ENOENT}
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	busy := strings.TrimSpace(string(procs)) != ""
	for _, e := range entries {
		busy = busy || e.IsDir()
	}
	if busy {
		return &os.PathError{Op: "rmdir", Path: dir, Err: unix.EBUSY}
	}
	return os.RemoveAll(dir)
}

func (k *fakeKernel) WriteFile(file, data string) error {
	if _, err := os.Stat(file); err != nil {
		return err
	}
	if err, ok := k.fail[k.rel(file)]; ok {
		delete(k.fail, k.rel(file))
		return &os.PathError{Op: "write", Path: file, Err: err}
	}
	k.writes = append(k.writes, k.rel(file)+"="+data)
	name := filepath.Base(file)
	if name == "cgroup.subtree_control" {
		return k.subtreeControl(file, data)
	}
	// Byte limits are kept in whole (huge) pages, rounded down.
	parts := strings.Split(name, ".")
	unit := int64(0)
	switch parts[0] {
	case "memory":
		unit = int64(os.Getpagesize())
	case "hugetlb":
		unit = map[string]int64{"2MB": 2 << 20, "1GB": 1 << 30}[parts[1]]
	}
	if n, err := strconv.ParseInt(data, 10, 64); err == nil && n > 0 && unit > 0 {
		data = strconv.FormatInt(n/unit*unit, 10)
	}
	return os.WriteFile(file, []byte(data+"\n"), 0o644)
}

func (k *fakeKernel) subtreeControl(file, data string) error {
	dir := filepath.Dir(file)
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	cur, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	on := setOf(strings.Fields(string(cur)))
	for _, tok := range strings.Fields(data) {
		c := tok[1:]
		if k.refuse[c] {
			return &os.PathError{Op: "write", Path: file, Err: unix.EBUSY}
		}
		if !slices.Contains(strings.Fields(string(avail)), c) {
			return &os.PathError{Op: "write", Path: file, Err: unix.ENOENT}
		}
		on[c] = tok[0] == '+'
	}
	var list []string
	for _, c := range v2Controllers {
		if on[c] {
			list = append(list, c)
		}
	}
	if err := os.WriteFile(file, []byte(strings.Join(list, " ")+"\n"), 0o644); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		child := filepath.Join(dir, e.Name())
		if err := os.WriteFile(filepath.Join(child, "cgroup.controllers"), []byte(strings.Join(list, " ")+"\n"), 0o644); err != nil {
			return err
		}
		if err := k.addFiles(child, list); err != nil {
			return err
		}
	}
	return nil
}

// snapshot is the whole state under root: every directory ("path/") and
// every file whose value is not the kernel's default for it (the defaults
// are implied by the directories), symlinks as "<symlink>". cgroup.controllers is left out, since it
// follows from the parent's subtree_control.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.IsDir():
			out[rel+"/"] = ""
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			out[rel] = "<symlink>"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if v := strings.TrimSpace(string(b)); !isDefault(d.Name(), v) {
			out[rel] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isDefault(name, v string) bool {
	switch name {
	case "cgroup.controllers":
		return true
	case "cgroup.procs", "cgroup.subtree_control":
		return v == ""
	}
	for _, defaults := range []map[string]map[string]string{v1Defaults, v2Defaults} {
		for _, files := range defaults {
			if d, ok := files[name]; ok && d == v {
				return true
			}
		}
	}
	return false
}
