package cm

import (
	"errors"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// The test node: 4 CPUs, 8Gi, pid_max 4194304; 600m, 1.5Gi and 1000 pids
// reserved, so node allocatable is 3400m (3481 shares, weight 133),
// 6979321856 bytes and 4193304 pids.
func testConfig(root string) Config {
	return Config{
		MountRoot:              root,
		CgroupRoot:             "/nodesuite",
		Capacity:               rl("cpu", "4", "memory", "8Gi", "pid", "4194304"),
		SystemReserved:         rl("cpu", "500m", "memory", "1Gi"),
		KubeReserved:           rl("cpu", "100m", "memory", "512Mi", "pid", "1000"),
		EnforceNodeAllocatable: []string{"pods"},
		PodPidsLimit:           -1,
	}
}

var v1Hiers = []string{"cpu", "cpuacct", "cpuset", "hugetlb", "memory", "pids", "systemd"}

// newTestManager sets up a node as the e2e harness leaves it: the v1
// hierarchies (or a v2 root with every controller enabled), cgroupRoot
// /nodesuite in each, cpuset filled in.
func newTestManager(t *testing.T, v2 bool, mutate func(*Config)) (*Manager, *fakeKernel) {
	t.Helper()
	root := t.TempDir()
	k := &fakeKernel{root: root, v2: v2}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if v2 {
		all := strings.Join(v2Controllers, " ")
		for f, v := range map[string]string{"cgroup.controllers": all, "cgroup.subtree_control": all, "cgroup.procs": "1", "cpuset.cpus.effective": "0-3"} {
			must(os.WriteFile(filepath.Join(root, f), []byte(v+"\n"), 0o644))
		}
		must(k.Mkdir(filepath.Join(root, "nodesuite")))
	} else {
		for _, h := range v1Hiers {
			must(os.Mkdir(filepath.Join(root, h), 0o755))
		}
		must(os.WriteFile(filepath.Join(root, "cpuset", "cpuset.cpus"), []byte("0-3\n"), 0o644))
		must(os.WriteFile(filepath.Join(root, "cpuset", "cpuset.mems"), []byte("0\n"), 0o644))
		// Symlinks to a hierarchy, as "cpu,cpuacct" gets, are not walked twice.
		must(os.Symlink("cpu", filepath.Join(root, "cpu,cpuacct")))
		for _, h := range v1Hiers {
			must(k.Mkdir(filepath.Join(root, h, "nodesuite")))
		}
		must(os.WriteFile(filepath.Join(root, "cpuset", "nodesuite", "cpuset.cpus"), []byte("0-3\n"), 0o644))
		must(os.WriteFile(filepath.Join(root, "cpuset", "nodesuite", "cpuset.mems"), []byte("0\n"), 0o644))
	}
	cfg := testConfig(root)
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := newManager(cfg, k)
	must(err)
	if m.CgroupV2() != v2 {
		t.Fatalf("detected v2=%v, want %v", m.CgroupV2(), v2)
	}
	return m, k
}

// state is a snapshot or what one should be.
type state map[string]string

func (s state) with(others ...state) state {
	out := maps.Clone(s)
	for _, o := range others {
		maps.Copy(out, o)
	}
	return out
}

// at places a cgroup's file values: under the hierarchy of the file's
// controller on v1, in the one tree on v2.
func at(v2 bool, dir string, files state) state {
	out := state{}
	for f, v := range files {
		if v2 {
			out[path.Join(dir, f)] = v
		} else {
			ctrl, _, _ := strings.Cut(f, ".")
			out[path.Join(ctrl, dir, f)] = v
		}
	}
	return out
}

// newCgroup is what creating dir leaves besides its values: the directory in
// every hierarchy and the cpuset copied from the parent (v1), or the
// controllers enabled in the parent (v2).
func newCgroup(v2 bool, dir string) state {
	if v2 {
		return state{dir + "/": "", path.Join(path.Dir(dir), "cgroup.subtree_control"): strings.Join(v2Controllers, " ")}
	}
	out := state{path.Join("cpuset", dir, "cpuset.cpus"): "0-3", path.Join("cpuset", dir, "cpuset.mems"): "0"}
	for _, h := range v1Hiers {
		out[path.Join(h, dir)+"/"] = ""
	}
	return out
}

// huge is the hugetlb limits (and reservation limits) for 2MB and 1GB pages.
func huge(v2 bool, twoMB, oneGB string) state {
	suffix := ".limit_in_bytes"
	if v2 {
		suffix = ".max"
	}
	return state{
		"hugetlb.2MB" + suffix: twoMB, "hugetlb.2MB.rsvd" + suffix: twoMB,
		"hugetlb.1GB" + suffix: oneGB, "hugetlb.1GB.rsvd" + suffix: oneGB,
	}
}

const unbounded = "4611686018427387904"

func setupState(v2 bool) state {
	if v2 {
		return state{"nodesuite/": "", "cgroup.subtree_control": strings.Join(v2Controllers, " "), "cgroup.procs": "1", "cpuset.cpus.effective": "0-3"}
	}
	s := state{"cpuset/cpuset.cpus": "0-3", "cpuset/cpuset.mems": "0", "cpu,cpuacct": "<symlink>"}
	for _, h := range v1Hiers {
		s[h+"/"] = ""
	}
	return s.with(newCgroup(false, "nodesuite"))
}

// startState is the node after Start with no Pods.
func startState(v2 bool) state {
	kubepods := state{"cpu.shares": "3481", "memory.limit_in_bytes": "6979321856", "pids.max": "4193304"}
	tier := state{"cpu.shares": "2"}
	if v2 {
		kubepods = state{"cpu.weight": "133", "memory.max": "6979321856", "pids.max": "4193304", "cpuset.cpus": "0-3"}
		tier = state{"cpu.weight": "1"}
	}
	return setupState(v2).with(
		newCgroup(v2, "nodesuite/kubepods"), newCgroup(v2, "nodesuite/kubepods/burstable"), newCgroup(v2, "nodesuite/kubepods/besteffort"),
		at(v2, "nodesuite/kubepods", kubepods.with(huge(v2, unbounded, unbounded))),
		at(v2, "nodesuite/kubepods/burstable", tier.with(huge(v2, unbounded, unbounded))),
		at(v2, "nodesuite/kubepods/besteffort", tier.with(huge(v2, unbounded, unbounded))),
	)
}

func checkState(t *testing.T, k *fakeKernel, want state) {
	t.Helper()
	if d := cmp.Diff(want, state(snapshot(t, k.root))); d != "" {
		t.Errorf("cgroup files (-want +got):\n%s", d)
	}
}

func rl(kv ...string) v1.ResourceList {
	out := v1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[v1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(req, lim v1.ResourceList) v1.Container {
	return v1.Container{Name: "c", Resources: v1.ResourceRequirements{Requests: req, Limits: lim}}
}

func pod(uid string, cs ...v1.Container) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Name: uid}, Spec: v1.PodSpec{Containers: cs}}
}

func withInit(p *v1.Pod, cs ...v1.Container) *v1.Pod {
	p.Spec.InitContainers = cs
	return p
}

func withOverhead(p *v1.Pod, overhead v1.ResourceList) *v1.Pod {
	p.Spec.Overhead = overhead
	return p
}

func withPodResources(p *v1.Pod, req, lim v1.ResourceList) *v1.Pod {
	p.Spec.Resources = &v1.ResourceRequirements{Requests: req, Limits: lim}
	return p
}

func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		active []*v1.Pod
		want   func(v2 bool) state
	}{
		{name: "kubepods limited to node allocatable", want: startState},
		{name: "pods not enforced: kubepods gets the capacity",
			mutate: func(c *Config) { c.EnforceNodeAllocatable = []string{"system-reserved"} },
			want: func(v2 bool) state {
				if v2 {
					return startState(v2).with(at(v2, "nodesuite/kubepods", state{"cpu.weight": "157", "memory.max": "8589934592", "pids.max": "4194304"}))
				}
				return startState(v2).with(at(v2, "nodesuite/kubepods", state{"cpu.shares": "4096", "memory.limit_in_bytes": "8589934592", "pids.max": "4194304"}))
			}},
		{name: "no pid capacity: pids.max left alone",
			mutate: func(c *Config) { delete(c.Capacity, ResourcePID) },
			want: func(v2 bool) state {
				s := startState(v2)
				for k := range at(v2, "nodesuite/kubepods", state{"pids.max": ""}) {
					delete(s, k)
				}
				return s
			}},
		{name: "burstable shares from the active Pods",
			active: []*v1.Pod{pod("b", ctr(rl("cpu", "250m"), nil))},
			want: func(v2 bool) state {
				if v2 {
					return startState(v2).with(at(v2, "nodesuite/kubepods/burstable", state{"cpu.weight": "10"}))
				}
				return startState(v2).with(at(v2, "nodesuite/kubepods/burstable", state{"cpu.shares": "256"}))
			}},
	} {
		for _, v2 := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/v1", true: "/v2"}[v2], func(t *testing.T) {
				m, k := newTestManager(t, v2, tc.mutate)
				if err := m.Start(tc.active); err != nil {
					t.Fatal(err)
				}
				checkState(t, k, tc.want(v2))
			})
		}
	}
}

// TestStartCgroupRootAtTop: cgroupRoot "/" puts kubepods at the top of each
// hierarchy.
func TestStartCgroupRootAtTop(t *testing.T) {
	m, k := newTestManager(t, false, func(c *Config) { c.CgroupRoot = "/" })
	if err := m.Start(nil); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, k.root)
	for _, want := range []string{"cpu/kubepods/burstable/", "memory/kubepods/besteffort/", "systemd/kubepods/"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
	if got["cpu/kubepods/cpu.shares"] != "3481" {
		t.Errorf("kubepods cpu.shares %q, want 3481", got["cpu/kubepods/cpu.shares"])
	}
	if p := m.PodCgroup(pod("u")); p != "/kubepods/besteffort/podu" {
		t.Errorf("PodCgroup %s", p)
	}
}

func TestStartNeedsCgroupRoot(t *testing.T) {
	t.Run("v1", func(t *testing.T) {
		m, k := newTestManager(t, false, nil)
		if err := os.RemoveAll(filepath.Join(k.root, "memory", "nodesuite")); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(nil); !errors.Is(err, ErrCgroupRootMissing) {
			t.Errorf("Start: %v, want ErrCgroupRootMissing", err)
		}
	})
	t.Run("v2 without the controllers", func(t *testing.T) {
		m, k := newTestManager(t, true, nil)
		if err := os.WriteFile(filepath.Join(k.root, "nodesuite", "cgroup.controllers"), []byte("cpu pids\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(nil); !errors.Is(err, ErrCgroupRootMissing) {
			t.Errorf("Start: %v, want ErrCgroupRootMissing", err)
		}
	})
	t.Run("EnsurePod before Start", func(t *testing.T) {
		m, _ := newTestManager(t, false, nil)
		if err := m.EnsurePod(pod("u")); !errors.Is(err, ErrNotStarted) {
			t.Errorf("EnsurePod: %v, want ErrNotStarted", err)
		}
	})
}

func TestEnsurePod(t *testing.T) {
	const (
		kubepods   = "nodesuite/kubepods"
		burstable  = "nodesuite/kubepods/burstable"
		besteffort = "nodesuite/kubepods/besteffort"
	)
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		pod    *v1.Pod
		dir    string
		v1, v2 state // the pod cgroup's values
	}{
		{name: "BestEffort: minimum shares, no huge pages",
			pod: pod("be", ctr(nil, nil)), dir: besteffort + "/podbe",
			v1: state{"cpu.shares": "2"}.with(huge(false, "0", "0")),
			v2: state{"cpu.weight": "1"}.with(huge(true, "0", "0"))},
		{name: "Burstable with requests only: shares, no quota or memory limit",
			pod: pod("b", ctr(rl("cpu", "250m", "memory", "64Mi"), nil), ctr(rl("cpu", "100m"), nil)), dir: burstable + "/podb",
			v1: state{"cpu.shares": "358"}.with(huge(false, "0", "0")),
			v2: state{"cpu.weight": "14"}.with(huge(true, "0", "0"))},
		{name: "Burstable with limits on some containers: no pod limits",
			pod: pod("b", ctr(rl("cpu", "250m"), rl("cpu", "500m", "memory", "128Mi")), ctr(nil, nil)), dir: burstable + "/podb",
			v1: state{"cpu.shares": "256"}.with(huge(false, "0", "0")),
			v2: state{"cpu.weight": "10"}.with(huge(true, "0", "0"))},
		{name: "Burstable with limits on every container: init container's larger request and limit count",
			pod: withInit(pod("b",
				ctr(rl("cpu", "200m"), rl("cpu", "400m", "memory", "100M")),
				ctr(rl("cpu", "100m"), rl("cpu", "300m", "memory", "100M"))),
				ctr(rl("cpu", "500m"), rl("cpu", "1", "memory", "64Mi"))),
			dir: burstable + "/podb",
			// 200M is kept in whole pages.
			v1: state{"cpu.shares": "512", "cpu.cfs_quota_us": "100000", "memory.limit_in_bytes": "199999488"}.with(huge(false, "0", "0")),
			v2: state{"cpu.weight": "20", "cpu.max": "100000 100000", "memory.max": "199999488"}.with(huge(true, "0", "0"))},
		{name: "Guaranteed with overhead: directly under kubepods, overhead in shares and limits",
			pod: withOverhead(pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))), rl("cpu", "250m", "memory", "120Mi")),
			dir: kubepods + "/podg",
			v1:  state{"cpu.shares": "1280", "cpu.cfs_quota_us": "125000", "memory.limit_in_bytes": "1199570944"}.with(huge(false, "0", "0")),
			v2:  state{"cpu.weight": "49", "cpu.max": "125000 100000", "memory.max": "1199570944"}.with(huge(true, "0", "0"))},
		{name: "cpuCFSQuota false: no quota",
			mutate: func(c *Config) { c.CPUCFSQuotaDisabled = true },
			pod:    pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))), dir: kubepods + "/podg",
			v1: state{"memory.limit_in_bytes": "1073741824"}.with(huge(false, "0", "0")), // 1024 shares is the default
			v2: state{"cpu.weight": "39", "memory.max": "1073741824"}.with(huge(true, "0", "0"))},
		{name: "podPidsLimit",
			mutate: func(c *Config) { c.PodPidsLimit = 1024 },
			pod:    pod("be", ctr(nil, nil)), dir: besteffort + "/podbe",
			v1: state{"cpu.shares": "2", "pids.max": "1024"}.with(huge(false, "0", "0")),
			v2: state{"cpu.weight": "1", "pids.max": "1024"}.with(huge(true, "0", "0"))},
		{name: "huge pages requested: that size only",
			pod: pod("h", ctr(rl("cpu", "100m", "memory", "64Mi", "hugepages-2Mi", "4Mi"), rl("memory", "64Mi", "hugepages-2Mi", "4Mi"))),
			dir: burstable + "/podh",
			v1:  state{"cpu.shares": "102", "memory.limit_in_bytes": "67108864"}.with(huge(false, "4194304", "0")),
			v2:  state{"cpu.weight": "4", "memory.max": "67108864"}.with(huge(true, "4194304", "0"))},
		{name: "pod-level resources: pod limits, memory.high on v2",
			pod: withPodResources(pod("p", ctr(nil, nil)), rl("cpu", "500m", "memory", "200Mi"), rl("cpu", "1", "memory", "400Mi")),
			dir: burstable + "/podp",
			v1:  state{"cpu.shares": "512", "cpu.cfs_quota_us": "100000", "memory.limit_in_bytes": "419430400"}.with(huge(false, "0", "0")),
			// 200Mi + 0.9 * 200Mi
			v2: state{"cpu.weight": "20", "cpu.max": "100000 100000", "memory.max": "419430400", "memory.high": "398458880"}.with(huge(true, "0", "0"))},
		{name: "the API server's QoS class decides the place",
			pod: func() *v1.Pod {
				p := pod("s", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi")))
				p.Status.QOSClass = v1.PodQOSBurstable
				return p
			}(),
			dir: burstable + "/pods",
			v1:  state{"cpu.cfs_quota_us": "100000", "memory.limit_in_bytes": "1073741824"}.with(huge(false, "0", "0")),
			v2:  state{"cpu.weight": "39", "cpu.max": "100000 100000", "memory.max": "1073741824"}.with(huge(true, "0", "0"))},
	} {
		for _, v2 := range []bool{false, true} {
			t.Run(tc.name+map[bool]string{false: "/v1", true: "/v2"}[v2], func(t *testing.T) {
				m, k := newTestManager(t, v2, tc.mutate)
				if err := m.Start(nil); err != nil {
					t.Fatal(err)
				}
				if err := m.EnsurePod(tc.pod); err != nil {
					t.Fatal(err)
				}
				if got := m.PodCgroup(tc.pod); got != "/"+tc.dir {
					t.Errorf("PodCgroup %s, want /%s", got, tc.dir)
				}
				values := tc.v1
				if v2 {
					values = tc.v2
				}
				checkState(t, k, startState(v2).with(newCgroup(v2, tc.dir), at(v2, tc.dir, values)))
			})
		}
	}
}

// TestUpdateQOS: burstable's shares are the Burstable Pods' CPU requests
// (overhead and init containers included), others ignored, and drop back to
// the minimum when they are gone.
func TestUpdateQOS(t *testing.T) {
	active := []*v1.Pod{
		pod("b1", ctr(rl("cpu", "250m"), nil)),
		withInit(pod("b2", ctr(rl("cpu", "100m"), nil)), ctr(rl("cpu", "500m"), nil)),
		withOverhead(pod("b3", ctr(rl("cpu", "100m"), rl("cpu", "200m"))), rl("cpu", "50m")),
		pod("b4", ctr(rl("memory", "64Mi"), nil)),
		pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))),
		pod("be", ctr(nil, nil)),
	}
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			m, k := newTestManager(t, v2, nil)
			if err := m.Start(nil); err != nil {
				t.Fatal(err)
			}
			if err := m.UpdateQOS(active); err != nil {
				t.Fatal(err)
			}
			// 250m + 500m + 150m
			want := state{"cpu.shares": "921"}
			if v2 {
				want = state{"cpu.weight": "36"}
			}
			checkState(t, k, startState(v2).with(at(v2, "nodesuite/kubepods/burstable", want)))
			if err := m.UpdateQOS(active[4:]); err != nil {
				t.Fatal(err)
			}
			checkState(t, k, startState(v2))
		})
	}
}

// TestIdempotent: ensuring what exists writes nothing, also on a node the
// upstream kubelet set up (the same files with the same values), and a value
// that drifted is the only one rewritten.
func TestIdempotent(t *testing.T) {
	pods := []*v1.Pod{
		pod("be", ctr(nil, nil)),
		withInit(pod("b", ctr(rl("cpu", "200m"), rl("cpu", "400m", "memory", "100M")), ctr(rl("cpu", "100m"), rl("cpu", "300m", "memory", "100M"))),
			ctr(rl("cpu", "500m"), rl("cpu", "1", "memory", "64Mi"))),
		withOverhead(pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))), rl("cpu", "250m", "memory", "120Mi")),
	}
	ensureAll := func(t *testing.T, m *Manager) {
		t.Helper()
		if err := m.Start(pods); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			if err := m.EnsurePod(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.UpdateQOS(pods); err != nil {
			t.Fatal(err)
		}
	}
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			m, k := newTestManager(t, v2, func(c *Config) { c.PodPidsLimit = 4096 })
			ensureAll(t, m)
			done := snapshot(t, k.root)

			k.writes = nil
			ensureAll(t, m)
			if len(k.writes) != 0 {
				t.Errorf("ensuring again wrote %q", k.writes)
			}

			// The upstream kubelet's node: the same tree, made by the
			// kernel (controllers enabled before the children are made),
			// with the same values in it.
			m2, k2 := newTestManager(t, v2, func(c *Config) { c.PodPidsLimit = 4096 })
			keys := slices.Sorted(maps.Keys(done))
			for _, key := range keys {
				if !strings.HasSuffix(key, "/") {
					continue
				}
				if err := k2.Mkdir(filepath.Join(k2.root, key)); err != nil && !errors.Is(err, os.ErrExist) {
					t.Fatal(err)
				}
				if v, ok := done[key+"cgroup.subtree_control"]; ok {
					if err := k2.WriteFile(filepath.Join(k2.root, key, "cgroup.subtree_control"), "+"+strings.ReplaceAll(v, " ", " +")); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, key := range keys {
				if !strings.HasSuffix(key, "/") && done[key] != "<symlink>" {
					if err := os.WriteFile(filepath.Join(k2.root, key), []byte(done[key]+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			k2.writes = nil
			ensureAll(t, m2)
			if len(k2.writes) != 0 {
				t.Errorf("on the upstream kubelet's node wrote %q", k2.writes)
			}
			if d := cmp.Diff(done, snapshot(t, k2.root)); d != "" {
				t.Errorf("upstream kubelet's node changed (-want +got):\n%s", d)
			}

			shares, want := "cpu/nodesuite/kubepods/burstable/podb/cpu.shares", "cpu/nodesuite/kubepods/burstable/podb/cpu.shares=512"
			if v2 {
				shares, want = "nodesuite/kubepods/burstable/podb/cpu.weight", "nodesuite/kubepods/burstable/podb/cpu.weight=20"
			}
			if err := os.WriteFile(filepath.Join(k.root, shares), []byte("1024\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			k.writes = nil
			if err := m.EnsurePod(pods[1]); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{want}, k.writes); d != "" {
				t.Errorf("drifted value rewrite (-want +got):\n%s", d)
			}
		})
	}
}

// TestEnableControllers (v2): a refused subtree_control write is retried
// one controller at a time, and a controller the parent does not have (io
// here) is not asked for again and again.
func TestEnableControllers(t *testing.T) {
	t.Run("one at a time after a refusal", func(t *testing.T) {
		m, k := newTestManager(t, true, nil)
		k.refuse = map[string]bool{"io": true}
		if err := m.Start(nil); err != nil {
			t.Fatal(err)
		}
		noIO := "cpuset cpu memory hugetlb pids"
		checkState(t, k, startState(true).with(state{"nodesuite/cgroup.subtree_control": noIO, "nodesuite/kubepods/cgroup.subtree_control": noIO}))
	})
	t.Run("unavailable controller", func(t *testing.T) {
		m, k := newTestManager(t, true, nil)
		noIO := "cpuset cpu memory hugetlb pids"
		if err := os.WriteFile(filepath.Join(k.root, "nodesuite", "cgroup.controllers"), []byte(noIO+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := m.Start(nil); err != nil {
			t.Fatal(err)
		}
		k.writes = nil
		if err := m.Start(nil); err != nil {
			t.Fatal(err)
		}
		if len(k.writes) != 0 {
			t.Errorf("Start again wrote %q", k.writes)
		}
		if got := snapshot(t, k.root)["nodesuite/cgroup.subtree_control"]; got != noIO {
			t.Errorf("nodesuite enables %q, want %q", got, noIO)
		}
	})
}

// TestShorterCFSPeriod: a period the kernel refuses until the quota is
// lowered (EINVAL) is written again after the quota, as runc does.
func TestShorterCFSPeriod(t *testing.T) {
	m, k := newTestManager(t, false, nil)
	if err := m.Start(nil); err != nil {
		t.Fatal(err)
	}
	g := pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi")))
	if err := m.EnsurePod(g); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(k.root, "cpu/nodesuite/kubepods/podg")
	for f, v := range map[string]string{"cpu.cfs_period_us": "200000", "cpu.cfs_quota_us": "200000"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k.fail = map[string]error{"cpu/nodesuite/kubepods/podg/cpu.cfs_period_us": unix.EINVAL}
	k.writes = nil
	if err := m.EnsurePod(g); err != nil {
		t.Fatal(err)
	}
	want := []string{"cpu/nodesuite/kubepods/podg/cpu.cfs_quota_us=100000", "cpu/nodesuite/kubepods/podg/cpu.cfs_period_us=100000"}
	if d := cmp.Diff(want, k.writes); d != "" {
		t.Errorf("writes (-want +got):\n%s", d)
	}
}

func TestRemovePod(t *testing.T) {
	b := pod("b", ctr(rl("cpu", "100m"), nil))
	for _, v2 := range []bool{false, true} {
		podDir := "nodesuite/kubepods/burstable/podb"
		// A task in the pod cgroup of one hierarchy (v1), or in a container
		// cgroup the runtime left (v2).
		procs := filepath.Join("memory", podDir, "cgroup.procs")
		if v2 {
			procs = filepath.Join(podDir, "ctr", "cgroup.procs")
		}
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			m, k := newTestManager(t, v2, nil)
			if err := m.Start(nil); err != nil {
				t.Fatal(err)
			}
			if err := m.EnsurePod(b); err != nil {
				t.Fatal(err)
			}
			// Container cgroups left behind go first.
			ctrDir := filepath.Join(k.root, "cpu", podDir, "ctr")
			if v2 {
				ctrDir = filepath.Join(k.root, podDir, "ctr")
			}
			if err := k.Mkdir(ctrDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(k.root, procs), []byte("1234\n"), 0o644); err != nil {
				t.Fatal(err)
			}

			err := m.RemovePod("b")
			if !errors.Is(err, ErrCgroupBusy) {
				t.Fatalf("RemovePod with a task: %v, want ErrCgroupBusy", err)
			}
			got := snapshot(t, k.root)
			if _, ok := got[filepath.Dir(procs)+"/"]; !ok {
				t.Errorf("the cgroup with the task is gone")
			}
			if !v2 {
				// Every other hierarchy is done with.
				for _, h := range v1Hiers {
					_, ok := got[path.Join(h, podDir)+"/"]
					if ok != (h == "memory") {
						t.Errorf("%s: pod cgroup present %v", h, ok)
					}
				}
			}

			if err := os.WriteFile(filepath.Join(k.root, procs), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := m.RemovePod("b"); err != nil {
				t.Fatalf("RemovePod without tasks: %v", err)
			}
			want := startState(v2)
			if v2 {
				// The controllers enabled for the Pod stay on.
				want = want.with(state{"nodesuite/kubepods/burstable/cgroup.subtree_control": strings.Join(v2Controllers, " ")})
			}
			checkState(t, k, want)
			if err := m.RemovePod("unknown"); err != nil {
				t.Errorf("RemovePod of a Pod without cgroup: %v", err)
			}
		})
	}
}

func TestOrphans(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v1", true: "v2"}[v2], func(t *testing.T) {
			m, k := newTestManager(t, v2, nil)
			if err := m.Start(nil); err != nil {
				t.Fatal(err)
			}
			for _, p := range []*v1.Pod{
				pod("g", ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))),
				pod("b", ctr(rl("cpu", "1"), nil)),
				pod("be", ctr(nil, nil)),
				pod("known", ctr(nil, nil)),
			} {
				if err := m.EnsurePod(p); err != nil {
					t.Fatal(err)
				}
			}
			// A pod cgroup left in one hierarchy only, and directories that
			// are no pod cgroups.
			hier := ""
			if !v2 {
				hier = "pids"
			}
			for _, d := range []string{"nodesuite/kubepods/besteffort/podhalf", "nodesuite/kubepods/burstable/pod", "nodesuite/kubepods/burstable/other"} {
				if err := k.Mkdir(filepath.Join(k.root, hier, d)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := m.Orphans(sets.New[types.UID]("known", "g"))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]types.UID{"b", "be", "half"}, got); d != "" {
				t.Errorf("Orphans (-want +got):\n%s", d)
			}
		})
	}
}

func TestOSFSWriteNeverCreates(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cpu.shares")
	if err := (osFS{}).WriteFile(f, "2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteFile of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteFile created %s", f)
	}
}

func TestMaxPIDs(t *testing.T) {
	n, err := MaxPIDs()
	if err != nil || n <= 0 {
		t.Errorf("MaxPIDs %d, %v", n, err)
	}
}
