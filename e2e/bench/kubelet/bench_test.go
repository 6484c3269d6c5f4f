package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, 1 * time.Millisecond}} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{3, 1, 2}, 99); got != 3 {
		t.Errorf("p99 of 3 = %v, want 3", got)
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS("Name:\tkubelet\nVmPeak:\t 900 kB\nVmRSS:\t   81234 kB\nThreads:\t12\n")
	if err != nil || got != 81234*1024 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 81234*1024)
	}
	if _, err := parseVmRSS("Name:\tx\n"); err == nil {
		t.Error("no VmRSS line: want an error")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a ')' in it; utime 250 and stime 50 ticks.
	stat := "1234 (kube let) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 1000 200"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3*time.Second {
		t.Errorf("got %v, want 3s", got)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

func TestCPUBetween(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := cpuSnapshot{at: t0, busy: 10 * time.Second, procs: map[int]procCPU{
		10: {comm: "containerd", ppid: 1, start: 5, own: time.Second, children: time.Second},
		11: {comm: "kubelet", ppid: 1, start: 6, own: 2 * time.Second},
		12: {comm: "gone", ppid: 1, start: 7, own: time.Second},
		13: {comm: "old", ppid: 1, start: 8, own: 9 * time.Second},
	}}
	b := cpuSnapshot{at: t0.Add(4 * time.Second), busy: 15 * time.Second, procs: map[int]procCPU{
		10: {comm: "containerd", ppid: 1, start: 5, own: 2 * time.Second, children: 3 * time.Second},
		11: {comm: "kubelet", ppid: 1, start: 6, own: 2500 * time.Millisecond},
		13: {comm: "containerd-shim", ppid: 1, start: 9, own: time.Second}, // PID 13 reused
		14: {comm: "sh", ppid: 13, start: 10, own: 500 * time.Millisecond}, // a Pod's process
		15: {comm: "go", ppid: 1, start: 11, own: 4 * time.Second},         // someone else's build
	}}
	// Node: containerd 3 + kubelet 0.5 (cluster PIDs) + the shim 1 + its child 0.5.
	want := burstCPU{wall: 4 * time.Second, busy: 5 * time.Second, node: 5 * time.Second, byComm: map[string]time.Duration{
		"containerd": 3 * time.Second, "kubelet": 500 * time.Millisecond, "containerd-shim": time.Second,
		"sh": 500 * time.Millisecond, "go": 4 * time.Second}}
	if d := cmp.Diff(want, cpuBetween(a, b, map[int]bool{10: true, 11: true, 12: true}), cmp.AllowUnexported(burstCPU{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestMerge(t *testing.T) {
	ms := time.Millisecond
	rs := []result{
		{kubelet: "ours", single: []time.Duration{1 * ms}, burst: []time.Duration{10 * ms, 20 * ms}, idleRSS: 30, podRSS: 40,
			burstCPU: 2 * time.Second, burstProcs: []burstCPU{{wall: time.Second}}},
		{kubelet: "ours", single: []time.Duration{2 * ms}, burst: []time.Duration{30 * ms, 40 * ms}, idleRSS: 10, podRSS: 50,
			burstCPU: 4 * time.Second, burstProcs: []burstCPU{{wall: 2 * time.Second}}},
		{kubelet: "ours", single: []time.Duration{3 * ms}, burst: []time.Duration{50 * ms, 60 * ms}, idleRSS: 20, podRSS: 60,
			burstCPU: 6 * time.Second, burstProcs: []burstCPU{{wall: 3 * time.Second}}},
	}
	want := result{kubelet: "ours", single: []time.Duration{1 * ms, 2 * ms, 3 * ms},
		burst: []time.Duration{10 * ms, 20 * ms, 30 * ms, 40 * ms, 50 * ms, 60 * ms}, idleRSS: 20, podRSS: 50,
		burstCPU: 4 * time.Second, burstProcs: []burstCPU{{wall: time.Second}, {wall: 2 * time.Second}, {wall: 3 * time.Second}}}
	if d := cmp.Diff(want, merge(rs), cmp.AllowUnexported(result{}, burstCPU{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
