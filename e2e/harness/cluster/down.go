package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// CgroupParent is the cgroup (under every v1 hierarchy) the kubelet puts
// Pods in (its cgroupRoot): a name of our own, so down can find every
// container process without touching anybody else's.
const CgroupParent = "nodesuite"

// Proc is a process as down sees it.
type Proc struct {
	PID, PPID  int
	StartTicks uint64
	Cmdline    string
	Cgroups    []string // the paths of /proc/PID/cgroup
}

// Link is a network interface; Master is its bridge, if any.
type Link struct{ Name, Master string }

// Observed is what down found on the host.
type Observed struct {
	Procs      []Proc
	Self       []int    // this process and its ancestors: never signalled
	Mounts     []string // mount points
	Links      []Link
	GuardTable bool
	CgroupDirs []string // existing <hierarchy>/nodesuite dirs and below
	Paths      []string // existing files/dirs that down removes
}

// ActionKind names one step of the down plan.
type ActionKind string

const (
	StopProcess    ActionKind = "stop"     // SIGTERM, wait, SIGKILL
	KillProcess    ActionKind = "kill"     // SIGKILL at once (containers)
	RunCommand     ActionKind = "run"      // e.g. kube-proxy --cleanup
	Unmount        ActionKind = "unmount"  // lazy unmount
	DeleteLink     ActionKind = "dellink"  // ip link del
	RemoveCgroup   ActionKind = "rmcgroup" // rmdir
	RestoreSysctl  ActionKind = "sysctl"   // write the value up found
	RemovePath     ActionKind = "rm"       // rm -rf
	DeleteNftTable ActionKind = "delnft"   // nft delete table inet <name>
)

// Action is one step; which fields matter depends on Kind.
type Action struct {
	Kind       ActionKind
	Target     string // name, path, table
	PID        int
	StartTicks uint64
	Args       []string
	Value      string
}

// PlanDown decides, from the recorded state and what is on the host, every
// step that returns the host to how it was. It is pure so that it can be
// tested against any state, including a crashed `up`.
func PlanDown(l Layout, st *State, obs Observed) []Action {
	var plan []Action
	self := map[int]bool{}
	for _, p := range obs.Self {
		self[p] = true
	}
	alive := map[int]Proc{}
	for _, p := range obs.Procs {
		alive[p.PID] = p
	}
	stopped := map[int]bool{}

	// Containers first: once the kubelet and runtime are gone nobody else
	// would stop them, and they hold the mounts and network namespaces.
	var pods []Proc
	for _, p := range obs.Procs {
		if !self[p.PID] && inOurCgroup(p) {
			pods = append(pods, p)
		}
	}
	// The kubelet would restart what we kill; stop it before the containers.
	recorded := st.Processes
	for i := len(recorded) - 1; i >= 0; i-- {
		r := recorded[i]
		if r.Name != "kubelet" {
			continue
		}
		if p, ok := alive[r.PID]; ok && !self[r.PID] && (r.StartTicks == 0 || r.StartTicks == p.StartTicks) {
			plan = append(plan, Action{Kind: StopProcess, Target: r.Name, PID: r.PID, StartTicks: p.StartTicks})
			stopped[r.PID] = true
		}
	}
	for _, p := range pods {
		if !stopped[p.PID] {
			plan = append(plan, Action{Kind: KillProcess, Target: firstWord(p.Cmdline), PID: p.PID, StartTicks: p.StartTicks})
			stopped[p.PID] = true
		}
	}
	// Then what up recorded, newest first (proxy and runtime before the
	// control plane they talk to).
	for i := len(recorded) - 1; i >= 0; i-- {
		r := recorded[i]
		p, ok := alive[r.PID]
		if !ok || stopped[r.PID] || self[r.PID] || (r.StartTicks != 0 && r.StartTicks != p.StartTicks) {
			continue
		}
		plan = append(plan, Action{Kind: StopProcess, Target: r.Name, PID: r.PID, StartTicks: p.StartTicks})
		stopped[r.PID] = true
	}
	// Leftovers that state.json does not know (a crash between start and
	// save, containerd's shims): anything whose command line names our dirs.
	for _, p := range obs.Procs {
		if stopped[p.PID] || self[p.PID] {
			continue
		}
		if strings.Contains(p.Cmdline, l.Dir+"/") || strings.Contains(p.Cmdline, l.RunDir+"/") {
			plan = append(plan, Action{Kind: StopProcess, Target: firstWord(p.Cmdline), PID: p.PID, StartTicks: p.StartTicks})
			stopped[p.PID] = true
		}
	}

	if st.ProxyBin != "" {
		// Removes kube-proxy's iptables chains and nftables tables; our
		// proxy uses the same names.
		plan = append(plan, Action{Kind: RunCommand, Target: "kube-proxy-cleanup", Args: []string{st.ProxyBin, "--cleanup"}})
		// Chains kube-proxy --cleanup leaves: the kubelet's canaries and
		// KUBE-FIREWALL with its jumps.
		for _, ipt := range []string{"iptables", "ip6tables"} {
			for _, args := range leftoverChainCmds {
				plan = append(plan, Action{Kind: RunCommand, Target: "iptables-chain", Args: append([]string{ipt, "-w"}, args...)})
			}
		}
	}

	// Mounts under our dirs, deepest first.
	var mounts []string
	for _, m := range obs.Mounts {
		if under(m, l.Dir) || under(m, l.RunDir) {
			mounts = append(mounts, m)
		}
	}
	sort.SliceStable(mounts, func(i, j int) bool { return depth(mounts[i]) > depth(mounts[j]) })
	for _, m := range mounts {
		plan = append(plan, Action{Kind: Unmount, Target: m})
	}

	// Veths still on our bridge (their netns may be gone already), then it.
	for _, ln := range obs.Links {
		if ln.Master == BridgeName {
			plan = append(plan, Action{Kind: DeleteLink, Target: ln.Name})
		}
	}
	for _, ln := range obs.Links {
		if ln.Name == BridgeName {
			plan = append(plan, Action{Kind: DeleteLink, Target: ln.Name})
		}
	}

	cg := append([]string(nil), obs.CgroupDirs...)
	sort.SliceStable(cg, func(i, j int) bool { return depth(cg[i]) > depth(cg[j]) })
	for _, d := range cg {
		plan = append(plan, Action{Kind: RemoveCgroup, Target: d})
	}

	keys := make([]string, 0, len(st.Sysctls))
	for k := range st.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		plan = append(plan, Action{Kind: RestoreSysctl, Target: k, Value: st.Sysctls[k]})
	}

	for _, p := range obs.Paths {
		plan = append(plan, Action{Kind: RemovePath, Target: p})
	}
	// Last: the guard stays while anything of the cluster might still send.
	if obs.GuardTable {
		plan = append(plan, Action{Kind: DeleteNftTable, Target: GuardTable})
	}
	return plan
}

// leftoverChainCmds remove the chains kube-proxy --cleanup does not.
var leftoverChainCmds = [][]string{
	{"-t", "mangle", "-X", "KUBE-KUBELET-CANARY"},
	{"-t", "nat", "-X", "KUBE-KUBELET-CANARY"},
	{"-t", "filter", "-X", "KUBE-KUBELET-CANARY"},
	{"-t", "mangle", "-X", "KUBE-IPTABLES-HINT"},
	{"-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"},
	{"-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"},
	{"-t", "filter", "-F", "KUBE-FIREWALL"},
	{"-t", "filter", "-X", "KUBE-FIREWALL"},
}

func inOurCgroup(p Proc) bool {
	for _, c := range p.Cgroups {
		if c == "/"+CgroupParent || strings.HasPrefix(c, "/"+CgroupParent+"/") {
			return true
		}
	}
	return false
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return filepath.Base(f[0])
	}
	return "?"
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimRight(dir, "/")+"/")
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// HostOS is the seam down uses to look at and change the host.
type HostOS interface {
	Observe(l Layout) (Observed, error)
	Alive(pid int, startTicks uint64) bool
	Signal(pid int, sig int) error
	Run(ctx context.Context, args []string) error
	Unmount(path string) error
	DeleteLink(name string) error
	Rmdir(path string) error
	WriteFile(path, value string) error
	RemoveAll(path string) error
	DeleteNftTable(name string) error
}

// Signals, as numbers so the planner and fakes need no syscall package.
const (
	sigTERM = 15
	sigKILL = 9
)

// Down stops and removes everything a cluster in layout l left on the host,
// whether `up` finished or crashed. It runs every step even when one fails
// and returns all errors joined; running it again is harmless.
func Down(ctx context.Context, log *zap.Logger, l Layout, host HostOS, grace time.Duration) error {
	st, err := LoadState(l.State())
	if err != nil {
		// A corrupt state file must not stop the cleanup: scan instead.
		log.Warn("state unreadable, cleaning by scanning", zap.Error(err))
		st = &State{}
	}
	obs, err := host.Observe(l)
	if err != nil {
		return fmt.Errorf("down: look at host: %w", err)
	}
	plan := PlanDown(l, st, obs)
	return Execute(ctx, log, host, plan, grace)
}

// Execute carries out a plan.
func Execute(ctx context.Context, log *zap.Logger, host HostOS, plan []Action, grace time.Duration) error {
	var errs []error
	fail := func(a Action, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", a.Kind, a.Target, err))
		}
	}
	i := 0
	for i < len(plan) {
		a := plan[i]
		switch a.Kind {
		case StopProcess, KillProcess:
			// Signal a run of consecutive process steps together, then wait
			// for all of them: one grace period, not one per process.
			// etcd starts a group of its own: the API server shuts down
			// slowly, up to the grace period, when etcd is gone first.
			j := i + 1
			for j < len(plan) && plan[j].Kind == a.Kind && plan[j].Target != "etcd" {
				j++
			}
			fail(a, stopAll(ctx, log, host, plan[i:j], grace))
			i = j
			continue
		case RunCommand:
			// Best effort: the chain or table may never have existed.
			if err := host.Run(ctx, a.Args); err != nil {
				log.Debug("cleanup command failed", zap.Strings("args", a.Args), zap.Error(err))
			}
		case Unmount:
			fail(a, host.Unmount(a.Target))
		case DeleteLink:
			fail(a, host.DeleteLink(a.Target))
		case RemoveCgroup:
			fail(a, host.Rmdir(a.Target))
		case RestoreSysctl:
			fail(a, host.WriteFile(a.Target, a.Value))
		case RemovePath:
			fail(a, host.RemoveAll(a.Target))
		case DeleteNftTable:
			fail(a, host.DeleteNftTable(a.Target))
		default:
			fail(a, errors.New("unknown action"))
		}
		i++
	}
	return errors.Join(errs...)
}

func stopAll(ctx context.Context, log *zap.Logger, host HostOS, group []Action, grace time.Duration) error {
	sig := sigTERM
	if group[0].Kind == KillProcess {
		sig = sigKILL
	}
	for _, a := range group {
		log.Info("stopping", zap.String("process", a.Target), zap.Int("pid", a.PID))
		_ = host.Signal(a.PID, sig) // already gone is fine
	}
	deadline := time.Now().Add(grace)
	for {
		var left []Action
		for _, a := range group {
			if host.Alive(a.PID, a.StartTicks) {
				left = append(left, a)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if sig == sigKILL {
				var names []string
				for _, a := range left {
					names = append(names, fmt.Sprintf("%s(%d)", a.Target, a.PID))
				}
				return fmt.Errorf("still running after SIGKILL: %s", strings.Join(names, " "))
			}
			for _, a := range left {
				log.Warn("did not stop in time, killing", zap.String("process", a.Target), zap.Int("pid", a.PID))
				_ = host.Signal(a.PID, sigKILL)
			}
			sig, group, deadline = sigKILL, left, time.Now().Add(10*time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
