package prober

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// scripted answers each probe kind from a list of results, then repeats the last.
type scripted struct {
	mu   sync.Mutex
	seq  map[string][]bool
	runs map[string]int
}

func (s *scripted) Run(_ context.Context, p *v1.Probe, _ Target) (bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := p.Exec.Command[0]
	seq := s.seq[k]
	i := min(s.runs[k], len(seq)-1)
	s.runs[k]++
	return seq[i], "scripted", nil
}

func TestState(t *testing.T) {
	m := &Manager{}
	m.results = map[resultKey]bool{{"a", Readiness}: true, {"b", Startup}: false, {"c", Startup}: true, {"c", Readiness}: false}
	probe := &v1.Probe{}
	tests := []struct {
		name           string
		c              v1.Container
		id             string
		running        bool
		started, ready bool
	}{
		{"no probes, running", v1.Container{}, "x", true, true, true},
		{"not running", v1.Container{ReadinessProbe: probe}, "a", false, false, false},
		{"readiness passed", v1.Container{ReadinessProbe: probe}, "a", true, true, true},
		{"readiness not yet run", v1.Container{ReadinessProbe: probe}, "z", true, true, false},
		{"startup pending hides readiness", v1.Container{StartupProbe: probe}, "b", true, false, false},
		{"started, readiness failing", v1.Container{StartupProbe: probe, ReadinessProbe: probe}, "c", true, true, false},
	}
	for _, tc := range tests {
		s, r := m.State(&tc.c, tc.id, tc.running)
		if s != tc.started || r != tc.ready {
			t.Errorf("%s: started, ready = %t, %t; want %t, %t", tc.name, s, r, tc.started, tc.ready)
		}
	}
}

func TestLivenessKillsAfterThreshold(t *testing.T) {
	runner := &scripted{seq: map[string][]bool{"live": {true, false, false}, "ready": {true}}, runs: map[string]int{}}
	var mu sync.Mutex
	var killed []string
	var triggers int
	done := make(chan struct{})
	m := &Manager{Runner: runner, Trigger: func(types.UID) { mu.Lock(); triggers++; mu.Unlock() },
		Kill: func(_ context.Context, _ *v1.Pod, c *v1.Container, id, why string) {
			mu.Lock()
			killed = append(killed, id+": "+why)
			mu.Unlock()
			close(done)
		}}
	exec := func(cmd string) v1.ProbeHandler { return v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{cmd}}} }
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u", Name: "p"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c",
		LivenessProbe:  &v1.Probe{ProbeHandler: exec("live"), PeriodSeconds: 1, FailureThreshold: 2},
		ReadinessProbe: &v1.Probe{ProbeHandler: exec("ready"), PeriodSeconds: 1}}}}}
	rp := &runtime.Pod{UID: "u", Containers: []*runtime.Container{{Name: "c", Status: &runtimeapi.ContainerStatus{Id: "id1",
		State: runtimeapi.ContainerState_CONTAINER_RUNNING, StartedAt: time.Now().UnixNano()}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Sync(ctx, pod, rp, "10.0.0.1")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("liveness failures did not kill the container")
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"id1: Container c failed liveness probe, will be restarted"}, killed); d != "" {
		t.Errorf("kills (-want +got):\n%s", d)
	}
	if _, ready := m.State(&pod.Spec.Containers[0], "id1", true); !ready {
		t.Errorf("readiness passed but the container is not ready")
	}
	if triggers == 0 {
		t.Errorf("result changes did not trigger a sync")
	}
	m.Forget("u")
	if len(m.workers) != 0 {
		t.Errorf("workers left after Forget: %v", m.workers)
	}
}
