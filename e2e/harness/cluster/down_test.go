package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
)

func TestPlanDown(t *testing.T) {
	l := testLayout
	full := &State{
		Processes: []ProcState{
			{Name: "etcd", PID: 10, StartTicks: 100},
			{Name: "kube-apiserver", PID: 11, StartTicks: 110},
			{Name: "containerd", PID: 12, StartTicks: 120},
			{Name: "kubelet", PID: 13, StartTicks: 130},
			{Name: "kube-proxy", PID: 14, StartTicks: 140},
		},
		Sysctls:  map[string]string{"/proc/sys/net/ipv4/ip_forward": "0"},
		ProxyBin: "/b/kube-proxy",
	}
	procs := []Proc{
		{PID: 1, Cmdline: "/init"},
		{PID: 10, StartTicks: 100, Cmdline: "/b/etcd --data-dir=/r/_output/cluster/etcd"},
		{PID: 11, StartTicks: 110, Cmdline: "/b/kube-apiserver"},
		{PID: 12, StartTicks: 120, Cmdline: "/b/containerd --config=/r/_output/cluster/config/containerd.toml"},
		{PID: 13, StartTicks: 130, Cmdline: "/b/kubelet"},
		{PID: 14, StartTicks: 140, Cmdline: "/b/kube-proxy"},
		{PID: 20, StartTicks: 200, Cmdline: "/b/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /run/nodesuite-cluster/containerd.sock"},
		{PID: 21, StartTicks: 210, Cmdline: "/pause", Cgroups: []string{"/nodesuite/kubepods/besteffort/pod1/abc"}},
		{PID: 22, StartTicks: 220, Cmdline: "/agnhost netexec", Cgroups: []string{"/nodesuite/kubepods/pod2/def"}},
		{PID: 30, StartTicks: 300, Cmdline: "/usr/bin/containerd", Cgroups: []string{"/kubepods/other"}}, // not ours
		{PID: 31, StartTicks: 310, Cmdline: "flock /run/nodesuite-cluster.lock make up"},                 // waits for the cluster lock: not ours
		{PID: 40, StartTicks: 400, Cmdline: "make down"},
		{PID: 41, StartTicks: 410, Cmdline: "/r/_output/bin/nodesuite-cluster down --repo /r/_output/cluster/x"},
	}
	obs := Observed{
		Procs: procs,
		Self:  []int{41, 40, 1},
		Mounts: []string{"/", "/proc", "/r/_output/cluster/kubelet/pods/p1/volumes/kubernetes.io~projected/x",
			"/run/nodesuite-cluster/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
			"/run/nodesuite-cluster/containerd/netns/cni-1", "/r/_output/clusterX/not-ours"},
		Links: []Link{{Name: "lo"}, {Name: "eth0"}, {Name: "nodesuite0"}, {Name: "veth1", Master: "nodesuite0"},
			{Name: "cni0"}, {Name: "veth9", Master: "cni0"}},
		GuardTable: true,
		CgroupDirs: []string{"/sys/fs/cgroup/pids/nodesuite", "/sys/fs/cgroup/pids/nodesuite/kubepods", "/sys/fs/cgroup/cpu/nodesuite"},
		Paths:      []string{"/r/_output/cluster/etcd", "/run/nodesuite-cluster"},
	}
	tests := []struct {
		name string
		st   *State
		obs  Observed
		want []Action
	}{
		{"nothing there", &State{}, Observed{Procs: []Proc{{PID: 1}}, Self: []int{1}}, nil},
		{"full cluster", full, obs, []Action{
			{Kind: StopProcess, Target: "kubelet", PID: 13, StartTicks: 130},
			{Kind: KillProcess, Target: "pause", PID: 21, StartTicks: 210},
			{Kind: KillProcess, Target: "agnhost", PID: 22, StartTicks: 220},
			{Kind: StopProcess, Target: "kube-proxy", PID: 14, StartTicks: 140},
			{Kind: StopProcess, Target: "containerd", PID: 12, StartTicks: 120},
			{Kind: StopProcess, Target: "kube-apiserver", PID: 11, StartTicks: 110},
			{Kind: StopProcess, Target: "etcd", PID: 10, StartTicks: 100},
			{Kind: StopProcess, Target: "containerd-shim-runc-v2", PID: 20, StartTicks: 200},
			{Kind: RunCommand, Target: "kube-proxy-cleanup", Args: []string{"/b/kube-proxy", "--cleanup"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "mangle", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "nat", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "filter", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "mangle", "-X", "KUBE-IPTABLES-HINT"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "filter", "-F", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"iptables", "-w", "-t", "filter", "-X", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "mangle", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "nat", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "filter", "-X", "KUBE-KUBELET-CANARY"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "mangle", "-X", "KUBE-IPTABLES-HINT"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "filter", "-F", "KUBE-FIREWALL"}},
			{Kind: RunCommand, Target: "iptables-chain", Args: []string{"ip6tables", "-w", "-t", "filter", "-X", "KUBE-FIREWALL"}},
			{Kind: Unmount, Target: "/r/_output/cluster/kubelet/pods/p1/volumes/kubernetes.io~projected/x"},
			{Kind: Unmount, Target: "/run/nodesuite-cluster/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs"},
			{Kind: Unmount, Target: "/run/nodesuite-cluster/containerd/netns/cni-1"},
			{Kind: DeleteLink, Target: "veth1"},
			{Kind: DeleteLink, Target: "nodesuite0"},
			{Kind: RemoveCgroup, Target: "/sys/fs/cgroup/pids/nodesuite/kubepods"},
			{Kind: RemoveCgroup, Target: "/sys/fs/cgroup/pids/nodesuite"},
			{Kind: RemoveCgroup, Target: "/sys/fs/cgroup/cpu/nodesuite"},
			{Kind: RestoreSysctl, Target: "/proc/sys/net/ipv4/ip_forward", Value: "0"},
			{Kind: RemovePath, Target: "/r/_output/cluster/etcd"},
			{Kind: RemovePath, Target: "/run/nodesuite-cluster"},
			{Kind: DeleteNftTable, Target: "nodesuite-guard"},
		}},
		{"recycled PIDs are not ours", &State{Processes: []ProcState{{Name: "etcd", PID: 10, StartTicks: 99}}},
			Observed{Procs: []Proc{{PID: 10, StartTicks: 100, Cmdline: "/usr/bin/vim"}}}, nil},
		{"crashed up: no state, leftovers found by scanning", &State{}, Observed{
			Procs: []Proc{
				{PID: 10, StartTicks: 100, Cmdline: "/b/etcd --data-dir=/r/_output/cluster/etcd"},
				{PID: 11, StartTicks: 110, Cmdline: "/b/kube-apiserver --etcd-cafile=/r/_output/cluster/pki/etcd-ca.crt"},
				{PID: 12, StartTicks: 120, Cmdline: "/b/kube-apiserver --etcd-cafile=/other/pki/etcd-ca.crt"},
			},
			Links:      []Link{{Name: "nodesuite0"}},
			GuardTable: true,
		}, []Action{
			{Kind: StopProcess, Target: "etcd", PID: 10, StartTicks: 100},
			{Kind: StopProcess, Target: "kube-apiserver", PID: 11, StartTicks: 110},
			{Kind: DeleteLink, Target: "nodesuite0"},
			{Kind: DeleteNftTable, Target: "nodesuite-guard"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, PlanDown(l, tt.st, tt.obs)); d != "" {
				t.Errorf("plan (-want +got):\n%s", d)
			}
		})
	}
}

// fakeHost records what Execute does; processes die on the signals listed
// in dieOn.
type fakeHost struct {
	alive  map[int]bool
	dieOn  map[int]int // pid -> signal that ends it
	calls  []string
	failOn map[string]error
}

func (f *fakeHost) Observe(Layout) (Observed, error) { return Observed{}, nil }
func (f *fakeHost) Alive(pid int, _ uint64) bool     { return f.alive[pid] }
func (f *fakeHost) Signal(pid, sig int) error {
	f.calls = append(f.calls, fmt.Sprintf("signal %d %d", pid, sig))
	if f.dieOn[pid] == sig || sig == sigKILL {
		f.alive[pid] = false
	}
	return nil
}
func (f *fakeHost) rec(s string) error { f.calls = append(f.calls, s); return f.failOn[s] }
func (f *fakeHost) Run(_ context.Context, a []string) error {
	return f.rec(fmt.Sprint("run ", a))
}
func (f *fakeHost) Unmount(p string) error        { return f.rec("umount " + p) }
func (f *fakeHost) DeleteLink(n string) error     { return f.rec("dellink " + n) }
func (f *fakeHost) Rmdir(p string) error          { return f.rec("rmdir " + p) }
func (f *fakeHost) WriteFile(p, v string) error   { return f.rec("write " + p + "=" + v) }
func (f *fakeHost) RemoveAll(p string) error      { return f.rec("rm " + p) }
func (f *fakeHost) DeleteNftTable(n string) error { return f.rec("delnft " + n) }

func TestExecute(t *testing.T) {
	plan := []Action{
		{Kind: StopProcess, Target: "kubelet", PID: 13},
		{Kind: KillProcess, Target: "pause", PID: 21},
		{Kind: StopProcess, Target: "etcd", PID: 10},
		{Kind: StopProcess, Target: "stubborn", PID: 11},
		{Kind: Unmount, Target: "/m"},
		{Kind: RunCommand, Args: []string{"kube-proxy", "--cleanup"}},
		{Kind: RemovePath, Target: "/busy"},
		{Kind: DeleteNftTable, Target: "nodesuite-guard"},
	}
	busy := errors.New("still mounted")
	f := &fakeHost{
		alive:  map[int]bool{13: true, 21: true, 10: true, 11: true},
		dieOn:  map[int]int{13: sigTERM, 10: sigTERM},
		failOn: map[string]error{"rm /busy": busy, "run [kube-proxy --cleanup]": errors.New("no iptables")},
	}
	err := Execute(context.Background(), zap.NewNop(), f, plan, 300*time.Millisecond)
	want := []string{
		"signal 13 15",
		"signal 21 9",
		"signal 10 15", "signal 11 15", "signal 11 9", // one grace period for the group, then KILL
		"umount /m",
		"run [kube-proxy --cleanup]", // its failure is only logged
		"rm /busy",
		"delnft nodesuite-guard", // a failed step does not stop later ones
	}
	if d := cmp.Diff(want, f.calls); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	if !errors.Is(err, busy) {
		t.Errorf("error %v does not wrap the failed rm", err)
	}
	for pid, a := range f.alive {
		if a {
			t.Errorf("pid %d still alive", pid)
		}
	}
}
