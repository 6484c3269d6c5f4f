package cm

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

var (
	// ErrCgroupBusy: a pod cgroup still has tasks (or child cgroups that
	// do); the caller retries the removal once they are gone.
	ErrCgroupBusy = errors.New("cgroup still has tasks")
	// ErrCgroupRootMissing: cgroupRoot does not exist (upstream refuses to
	// start on it too); it is for the node's setup to create.
	ErrCgroupRootMissing = errors.New("cgroupRoot does not exist")
	// ErrNotStarted: EnsurePod before Start has created the QoS cgroups.
	ErrNotStarted = errors.New("QoS cgroups not created yet")
)

// DefaultMountRoot is where the cgroup hierarchies are mounted.
const DefaultMountRoot = "/sys/fs/cgroup"

// EnforcePods is the enforceNodeAllocatable key that limits kubepods to
// node allocatable.
const EnforcePods = "pods"

// Config is what the Manager needs of the kubelet's configuration.
type Config struct {
	// MountRoot holds the cgroup hierarchies; "" is DefaultMountRoot.
	MountRoot string
	// CgroupRoot is cgroupRoot in cgroupfs form ("/", "/nodesuite"); "" is "/".
	CgroupRoot string
	// Capacity is the node's: cpu, memory and ResourcePID (MaxPIDs) limit
	// kubepods, as upstream's internal capacity does.
	Capacity v1.ResourceList
	// SystemReserved and KubeReserved come off Capacity when
	// EnforceNodeAllocatable has "pods". Eviction thresholds do not: they
	// are not part of upstream's kubepods limit either.
	SystemReserved, KubeReserved v1.ResourceList
	EnforceNodeAllocatable       []string
	// PodPidsLimit is each pod cgroup's pids.max; <= 0 leaves it unlimited.
	PodPidsLimit int64
	// CPUCFSQuotaDisabled is cpuCFSQuota: false, pod cgroups without CPU
	// quota.
	CPUCFSQuotaDisabled bool
	// MemoryThrottlingFactor (v2, pods with pod-level resources) sets
	// memory.high; 0 is upstream's default 0.9.
	MemoryThrottlingFactor float64
}

// Manager keeps kubepods, its QoS tiers and the pod cgroups. Its methods are
// safe for concurrent use.
type Manager struct {
	cfg    Config
	fs     cgroupFS
	layout *layout

	root, kubepods, burstable, besteffort string // cgroupfs names

	mu      sync.Mutex
	started bool
}

// New reads how the cgroup hierarchies are mounted; it changes nothing.
func New(cfg Config) (*Manager, error) { return newManager(cfg, osFS{}) }

func newManager(cfg Config, fs cgroupFS) (*Manager, error) {
	if cfg.MountRoot == "" {
		cfg.MountRoot = DefaultMountRoot
	}
	if cfg.MemoryThrottlingFactor == 0 {
		cfg.MemoryThrottlingFactor = defaultMemoryThrottlingFactor
	}
	l, err := detectLayout(fs, cfg.MountRoot)
	if err != nil {
		return nil, err
	}
	root := path.Clean("/" + cfg.CgroupRoot)
	kubepods := path.Join(root, "kubepods")
	return &Manager{
		cfg: cfg, fs: fs, layout: l,
		root: root, kubepods: kubepods,
		burstable:  path.Join(kubepods, "burstable"),
		besteffort: path.Join(kubepods, "besteffort"),
	}, nil
}

// CgroupV2 tells whether the node runs the unified hierarchy.
func (m *Manager) CgroupV2() bool { return m.layout.v2 }

// PodCgroup is the Pod's cgroup in cgroupfs form, the CRI CgroupParent:
// Guaranteed Pods directly under kubepods, the others under their tier.
func (m *Manager) PodCgroup(pod *v1.Pod) string {
	return path.Join(m.qosParent(QOSClass(pod)), "pod"+string(pod.UID))
}

func (m *Manager) qosParent(qos v1.PodQOSClass) string {
	switch qos {
	case v1.PodQOSGuaranteed:
		return m.kubepods
	case v1.PodQOSBurstable:
		return m.burstable
	}
	return m.besteffort
}

// Start creates kubepods (limited to node allocatable), burstable and
// besteffort and sets their values, burstable's from activePods. Call it
// once before any EnsurePod. An error after the cgroups exist (kubepods'
// memory limit below what the Pods already use, say) leaves the Manager
// usable: call Start again later, as upstream retries node-allocatable
// enforcement every minute.
func (m *Manager) Start(activePods []*v1.Pod) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.validateRoot(); err != nil {
		return err
	}
	for _, name := range []string{m.kubepods, m.burstable, m.besteffort} {
		if err := m.ensureDirs(name); err != nil {
			return err
		}
	}
	m.started = true

	kp := nodeAllocatableConfig(m.nodeAllocatable())
	cpus, err := m.allCPUs()
	kp.CPUSet = cpus
	if m.layout.v2 {
		// MemoryQoS with memoryReservationPolicy None: no memory protection
		// left over from another configuration.
		kp.Unified = map[string]string{"memory.min": "0", "memory.low": "0"}
	}
	return errors.Join(err, m.apply(m.kubepods, kp), m.updateQOS(activePods))
}

// nodeAllocatable is upstream's for enforcement: capacity less the
// reservations when "pods" is enforced, the capacity otherwise.
func (m *Manager) nodeAllocatable() v1.ResourceList {
	enforce := slices.Contains(m.cfg.EnforceNodeAllocatable, EnforcePods)
	out := v1.ResourceList{}
	for rn, q := range m.cfg.Capacity {
		v := q.DeepCopy()
		if enforce {
			if r, ok := m.cfg.SystemReserved[rn]; ok {
				v.Sub(r)
			}
			if r, ok := m.cfg.KubeReserved[rn]; ok {
				v.Sub(r)
			}
			if v.Sign() < 0 {
				v.Set(0)
			}
		}
		out[rn] = v
	}
	return out
}

// UpdateQOS recomputes the tiers from the active (not terminated) Pods:
// burstable's CPU shares are the sum of the Burstable Pods' CPU requests.
// Call it before EnsurePod of a new Pod (with that Pod among activePods),
// after a Pod's containers are killed, and every minute, as upstream does.
// QoS memory reservation (QOSReserved) is not supported, so memory is left
// alone here.
func (m *Manager) UpdateQOS(activePods []*v1.Pod) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return ErrNotStarted
	}
	return m.updateQOS(activePods)
}

func (m *Manager) updateQOS(activePods []*v1.Pod) error {
	var milliCPU int64
	for _, pod := range activePods {
		if QOSClass(pod) != v1.PodQOSBurstable {
			continue
		}
		if q, ok := podRequests(pod)[v1.ResourceCPU]; ok {
			milliCPU += q.MilliValue()
		}
	}
	burstableShares, besteffortShares := MilliCPUToShares(milliCPU), uint64(MinShares)
	// Huge pages are bounded per Pod only: the tiers get the unbounded
	// limit upstream's periodic update writes (kubepods included).
	bu := &ResourceConfig{CPUShares: &burstableShares, HugePageLimit: map[int64]int64{}, HugePageRest: hugePagesUnbounded}
	if m.layout.v2 {
		bu.Unified = map[string]string{"memory.low": "0"}
	}
	be := &ResourceConfig{CPUShares: &besteffortShares, HugePageLimit: map[int64]int64{}, HugePageRest: hugePagesUnbounded}
	kp := &ResourceConfig{HugePageLimit: map[int64]int64{}, HugePageRest: hugePagesUnbounded}
	var errs []error
	for _, c := range []struct {
		name string
		rc   *ResourceConfig
	}{{m.kubepods, kp}, {m.burstable, bu}, {m.besteffort, be}} {
		if err := m.ensureDirs(c.name); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, m.apply(c.name, c.rc))
	}
	return errors.Join(errs...)
}

// EnsurePod creates the Pod's cgroup, or brings an existing one back to the
// Pod's values, before its sandbox is created.
func (m *Manager) EnsurePod(pod *v1.Pod) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started {
		return ErrNotStarted
	}
	name := m.PodCgroup(pod)
	if err := m.ensureDirs(name); err != nil {
		return err
	}
	rc := ResourceConfigForPod(pod, !m.cfg.CPUCFSQuotaDisabled, m.layout.v2, m.cfg.MemoryThrottlingFactor)
	if m.cfg.PodPidsLimit > 0 {
		limit := m.cfg.PodPidsLimit
		rc.PidsLimit = &limit
	}
	return m.apply(name, rc)
}

// podDirs are where a pod<uid> cgroup of any QoS class can be, in every
// hierarchy.
func (m *Manager) podDirs(uid types.UID) []string {
	var dirs []string
	for _, h := range m.layout.hiers {
		for _, parent := range []string{m.kubepods, m.burstable, m.besteffort} {
			dirs = append(dirs, filepath.Join(h.dir, parent, "pod"+string(uid)))
		}
	}
	return dirs
}

// RemovePod removes the Pod's cgroup from every hierarchy, child cgroups
// the runtime left first, once its containers are gone (upstream also kills
// what is left in it; this leaves that to the caller). An error matching
// ErrCgroupBusy means tasks remain: retry later.
func (m *Manager) RemovePod(uid types.UID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, dir := range m.podDirs(uid) {
		errs = append(errs, m.removeTree(dir))
	}
	return errors.Join(errs...)
}

func (m *Manager) removeTree(dir string) error {
	err := m.fs.Rmdir(dir)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	entries, rerr := m.fs.ReadDir(dir)
	if errors.Is(rerr, os.ErrNotExist) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := m.removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	err = m.fs.Rmdir(dir)
	switch {
	case err == nil, errors.Is(err, os.ErrNotExist):
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: %w", ErrCgroupBusy, err)
	}
	return fmt.Errorf("remove pod cgroup: %w", err)
}

// Orphans lists the Pods that have a cgroup in any hierarchy but are not
// known, sorted, for the caller to RemovePod (upstream's
// cleanupOrphanedPodCgroups).
func (m *Manager) Orphans(known sets.Set[types.UID]) ([]types.UID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	found := sets.New[types.UID]()
	for _, h := range m.layout.hiers {
		for _, parent := range []string{m.kubepods, m.burstable, m.besteffort} {
			entries, err := m.fs.ReadDir(filepath.Join(h.dir, parent))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("list pod cgroups: %w", err)
			}
			for _, e := range entries {
				uid, ok := strings.CutPrefix(e.Name(), "pod")
				if e.IsDir() && ok && uid != "" && !known.Has(types.UID(uid)) {
					found.Insert(types.UID(uid))
				}
			}
		}
	}
	return sets.List(found), nil
}

// validateRoot refuses a cgroupRoot that does not exist, as upstream does:
// on v1 in the hierarchies it checks, on v2 with the controllers it needs.
func (m *Manager) validateRoot() error {
	if !m.layout.v2 {
		checked := []string{"cpu", "cpuacct", "cpuset", "memory", "systemd", "pids", "hugetlb"}
		for _, h := range m.layout.hiers {
			if !slices.ContainsFunc(checked, func(c string) bool { return h.controllers[c] }) {
				continue
			}
			if _, err := m.fs.ReadDir(filepath.Join(h.dir, m.root)); err != nil {
				return fmt.Errorf("%w: %w", ErrCgroupRootMissing, err)
			}
		}
		return nil
	}
	s, err := m.fs.ReadFile(filepath.Join(m.layout.hiers[0].dir, m.root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCgroupRootMissing, err)
	}
	have := setOf(strings.Fields(s))
	for _, c := range []string{"cpu", "cpuset", "memory", "hugetlb", "pids"} {
		if slices.Contains(m.layout.rootControllers, c) && !have[c] {
			return fmt.Errorf("%w: %s lacks the %s controller", ErrCgroupRootMissing, m.root, c)
		}
	}
	return nil
}

// allCPUs is the node's CPU list, which upstream writes to kubepods'
// cpuset.cpus (the none CPU manager policy); "" without cpuset.
func (m *Manager) allCPUs() (string, error) {
	for _, h := range m.layout.hiers {
		if !h.controllers["cpuset"] {
			continue
		}
		file := "cpuset.cpus"
		if m.layout.v2 {
			file = "cpuset.cpus.effective"
		}
		s, err := m.fs.ReadFile(filepath.Join(h.dir, file))
		if err != nil {
			return "", fmt.Errorf("read the node's CPUs: %w", err)
		}
		return strings.TrimSpace(s), nil
	}
	return "", nil
}

func (m *Manager) exists(name string) bool {
	for _, h := range m.layout.hiers {
		if _, err := m.fs.ReadDir(filepath.Join(h.dir, name)); err == nil {
			return true
		}
	}
	return false
}

// ensureDirs creates the cgroup name and its missing ancestors in every
// hierarchy as runc's cgroupfs managers do for upstream: on v1 a cpuset
// level gets its parent's cpus and mems (it takes no tasks without), on v2
// every level above name gets all the root's controllers enabled.
func (m *Manager) ensureDirs(name string) error {
	parts := strings.Split(strings.Trim(name, "/"), "/")
	for _, h := range m.layout.hiers {
		dir := h.dir
		for i, p := range parts {
			if m.layout.v2 {
				if err := m.enableControllers(dir); err != nil {
					return err
				}
			}
			parent := dir
			dir = filepath.Join(dir, p)
			if err := m.fs.Mkdir(dir); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("create cgroup %s: %w", path.Join("/", path.Join(parts[:i+1]...)), err)
			}
			if h.controllers["cpuset"] && !m.layout.v2 {
				if err := m.copyCpuset(parent, dir); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// copyCpuset fills an empty cpuset.cpus/mems from the parent's.
func (m *Manager) copyCpuset(parent, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		have, err := m.fs.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("cgroup cpuset: %w", err)
		}
		if strings.TrimSpace(have) != "" {
			continue
		}
		v, err := m.fs.ReadFile(filepath.Join(parent, f))
		if err != nil {
			return fmt.Errorf("cgroup cpuset: %w", err)
		}
		if err := m.fs.WriteFile(filepath.Join(dir, f), strings.TrimSpace(v)); err != nil {
			return fmt.Errorf("cgroup cpuset: %w", err)
		}
	}
	return nil
}

// enableControllers enables in dir's subtree_control the root's controllers
// it has but not yet enabled. Failures are left for the value writes to
// report, as runc does: a controller that cannot be enabled (tasks in dir)
// may not be needed.
func (m *Manager) enableControllers(dir string) error {
	avail, err := m.fs.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup controllers: %w", err)
	}
	enabled, err := m.fs.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup controllers: %w", err)
	}
	has, on := setOf(strings.Fields(avail)), setOf(strings.Fields(enabled))
	var add []string
	for _, c := range m.layout.rootControllers {
		if has[c] && !on[c] {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	file := filepath.Join(dir, "cgroup.subtree_control")
	if m.fs.WriteFile(file, strings.Join(add, " ")) != nil {
		for _, c := range add {
			_ = m.fs.WriteFile(file, c)
		}
	}
	return nil
}

// setting is one value for one interface file of a controller.
type setting struct{ ctrl, file, value string }

// apply writes rc to the cgroup name in every hierarchy, only the values
// that differ from what the files hold.
func (m *Manager) apply(name string, rc *ResourceConfig) error {
	var errs []error
	for _, h := range m.layout.hiers {
		dir := filepath.Join(h.dir, name)
		settings, err := m.settings(h, dir, rc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var deferred []setting
		for i, s := range settings {
			err := m.write(dir, s)
			// A shorter period can exceed the parent's quota until the new
			// quota is in: try it again after the quota, as runc does.
			if s.file == "cpu.cfs_period_us" && errors.Is(err, unix.EINVAL) &&
				slices.ContainsFunc(settings[i:], func(s setting) bool { return s.file == "cpu.cfs_quota_us" }) {
				deferred = append(deferred, s)
				continue
			}
			errs = append(errs, err)
		}
		for _, s := range deferred {
			errs = append(errs, m.write(dir, s))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) write(dir string, s setting) error {
	file := filepath.Join(dir, s.file)
	have, err := m.fs.ReadFile(file)
	if err != nil {
		return fmt.Errorf("cgroup %s: %w", s.ctrl, err)
	}
	if sameValue(s.file, have, s.value) {
		return nil
	}
	if err := m.fs.WriteFile(file, s.value); err != nil {
		return fmt.Errorf("cgroup %s: %s: %w", s.ctrl, file, err)
	}
	return nil
}

// settings turns rc into interface file values as runc's fs (v1) and fs2
// managers write them for upstream, for the controllers of h the root has.
func (m *Manager) settings(h hierarchy, dir string, rc *ResourceConfig) ([]setting, error) {
	var out []setting
	add := func(ctrl, file, value string) {
		if h.controllers[ctrl] {
			out = append(out, setting{ctrl, file, value})
		}
	}
	pids := func() string {
		switch limit := *rc.PidsLimit; {
		case limit > 0:
			return strconv.FormatInt(limit, 10)
		case limit == 0:
			return "1" // as runc, so the fs and systemd drivers agree
		}
		return "max"
	}
	if !m.layout.v2 {
		if rc.Memory != nil && *rc.Memory != 0 {
			add("memory", "memory.limit_in_bytes", strconv.FormatInt(*rc.Memory, 10))
		}
		if rc.CPUShares != nil && *rc.CPUShares != 0 {
			add("cpu", "cpu.shares", strconv.FormatUint(*rc.CPUShares, 10))
		}
		if rc.CPUPeriod != nil && *rc.CPUPeriod != 0 {
			add("cpu", "cpu.cfs_period_us", strconv.FormatUint(*rc.CPUPeriod, 10))
		}
		if rc.CPUQuota != nil && *rc.CPUQuota != 0 {
			add("cpu", "cpu.cfs_quota_us", strconv.FormatInt(*rc.CPUQuota, 10))
		}
		if rc.PidsLimit != nil {
			add("pids", "pids.max", pids())
		}
		if rc.CPUSet != "" {
			add("cpuset", "cpuset.cpus", rc.CPUSet)
		}
	} else {
		if rc.PidsLimit != nil {
			add("pids", "pids.max", pids())
		}
		if rc.Memory != nil && *rc.Memory != 0 {
			v := strconv.FormatInt(*rc.Memory, 10)
			if *rc.Memory == -1 {
				v = "max"
			}
			add("memory", "memory.max", v)
		}
		if rc.CPUShares != nil && *rc.CPUShares != 0 {
			add("cpu", "cpu.weight", strconv.FormatUint(CPUSharesToWeight(*rc.CPUShares), 10))
		}
		var quota int64
		var period uint64
		if rc.CPUQuota != nil {
			quota = *rc.CPUQuota
		}
		if rc.CPUPeriod != nil {
			period = *rc.CPUPeriod
		}
		if quota != 0 || period != 0 {
			v := "max"
			if quota > 0 {
				v = strconv.FormatInt(quota, 10)
			}
			if period == 0 {
				period = QuotaPeriod
			}
			add("cpu", "cpu.max", v+" "+strconv.FormatUint(period, 10))
		}
		if rc.CPUSet != "" {
			add("cpuset", "cpuset.cpus", rc.CPUSet)
		}
	}
	if rc.HugePageLimit != nil && h.controllers["hugetlb"] {
		sizes, rsvd, err := hugetlbSizes(m.fs, dir, m.layout.v2)
		if err != nil {
			return nil, fmt.Errorf("cgroup hugetlb: %w", err)
		}
		suffix := ".limit_in_bytes"
		if m.layout.v2 {
			suffix = ".max"
		}
		for _, s := range sizes {
			bytes, _ := parsePageSize(s)
			limit, ok := rc.HugePageLimit[bytes]
			if !ok {
				limit = rc.HugePageRest
			}
			v := strconv.FormatInt(limit, 10)
			add("hugetlb", "hugetlb."+s+suffix, v)
			if rsvd {
				add("hugetlb", "hugetlb."+s+".rsvd"+suffix, v)
			}
		}
	}
	if m.layout.v2 {
		keys := make([]string, 0, len(rc.Unified))
		for k := range rc.Unified {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ctrl, _, _ := strings.Cut(k, ".")
			add(ctrl, k, rc.Unified[k])
		}
	}
	return out, nil
}

// MaxPIDs is the node's task limit, the least of kernel.pid_max and
// kernel.threads-max, for Capacity[ResourcePID] as upstream's pidlimit.
func MaxPIDs() (int64, error) {
	limit := int64(-1)
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, fmt.Errorf("max pids: %w", err)
		}
		v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("max pids: %s: %w", f, err)
		}
		if limit == -1 || v < limit {
			limit = v
		}
	}
	return limit, nil
}
