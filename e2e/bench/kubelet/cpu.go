package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// procCPU is one process's CPU time: its own and its reaped children's.
// runc and the CNI plugins live shortly as children of the shims and of
// containerd, so their time shows in their parents' children time.
type procCPU struct {
	comm          string
	ppid          int
	start         uint64 // start time, to tell a reused PID
	own, children time.Duration
}

// cpuSnapshot is every process's CPU time and the machine's busy time.
type cpuSnapshot struct {
	at    time.Time
	procs map[int]procCPU
	busy  time.Duration // all CPUs, not idle or iowait
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func takeCPU() (cpuSnapshot, error) {
	s := cpuSnapshot{at: time.Now(), procs: map[int]procCPU{}}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return s, err
	}
	st, err := fs.Stat()
	if err != nil {
		return s, err
	}
	c := st.CPUTotal
	s.busy = seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal)
	procs, err := fs.AllProcs()
	if err != nil {
		return s, err
	}
	for _, p := range procs {
		ps, err := p.Stat()
		if err != nil {
			continue // exited meanwhile
		}
		tick := seconds(1 / 100.0) // USER_HZ on Linux
		s.procs[p.PID] = procCPU{comm: ps.Comm, ppid: ps.PPID, start: ps.Starttime, own: time.Duration(ps.UTime+ps.STime) * tick,
			children: time.Duration(ps.CUTime+ps.CSTime) * tick}
	}
	return s, nil
}

// burstCPU is what each command used between two snapshots: a process
// that started in between counts whole, one that ended counts only through
// its parent's children time.
type burstCPU struct {
	wall, busy time.Duration
	p99        time.Duration // the round's burst start latency, to read beside its CPU
	byComm     map[string]time.Duration
	// node is the cluster's own processes (etcd, the control plane,
	// containerd, the kubelet), the shims and every Pod's processes: the
	// rest of busy is other work on the machine.
	node time.Duration
	// calls are the API requests and the kubelet's CRI calls per Pod
	// during the burst.
	calls callCounts
}

// cpuBetween: cluster are the PIDs the cluster started; the shims, which
// daemonize, are found by name.
func cpuBetween(a, b cpuSnapshot, cluster map[int]bool) burstCPU {
	out := burstCPU{wall: b.at.Sub(a.at), busy: b.busy - a.busy, byComm: map[string]time.Duration{}}
	inNode := func(pid int) bool {
		for i := 0; pid > 1 && i < 64; i++ {
			p, ok := b.procs[pid]
			if !ok {
				return false
			}
			if cluster[pid] || p.comm == "containerd-shim" {
				return true
			}
			pid = p.ppid
		}
		return false
	}
	for pid, p := range b.procs {
		d := p.own + p.children
		if q, ok := a.procs[pid]; ok && q.start == p.start {
			d -= q.own + q.children
		}
		if d <= 0 {
			continue
		}
		out.byComm[p.comm] += d
		if inNode(pid) {
			out.node += d
		}
	}
	return out
}

// print writes the wall time, the machine's busy time of what the cores
// offered, and the top commands.
func (c burstCPU) print(out io.Writer, name string, top int) {
	type kv struct {
		k string
		v time.Duration
	}
	var all []kv
	for k, v := range c.byComm {
		all = append(all, kv{k, v})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v })
	var parts []string
	for i, e := range all {
		if i == top {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f", e.k, e.v.Seconds()))
	}
	offered := c.wall * time.Duration(runtime.NumCPU())
	fmt.Fprintf(out, "%s: burst p99 %.1fs, wall %.1fs, machine busy %.1f of %.1f CPU-s, of which the node (cluster, shims, Pods) %.1f and other work %.1f;\n  CPU-s by command (children in parents): %s\n",
		name, c.p99.Seconds(), c.wall.Seconds(), c.busy.Seconds(), offered.Seconds(), c.node.Seconds(), (c.busy - c.node).Seconds(), strings.Join(parts, ", "))
	c.calls.print(out, name)
}
