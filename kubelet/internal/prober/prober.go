// Package prober runs the liveness, readiness and startup probes of running
// containers (exec through CRI ExecSync, HTTP GET, TCP connect, gRPC health)
// with upstream's timing and thresholds, and reports what the Pod status and
// the pod workers need: which containers are ready, which have started, and
// which failed liveness (the worker kills those, so restartPolicy applies).
package prober

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// Kind is which probe.
type Kind string

// The three probes.
const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Runner executes one probe attempt; an interface so unit tests need no network.
type Runner interface {
	Run(ctx context.Context, p *v1.Probe, target Target) (ok bool, output string, err error)
}

// Target is what a probe addresses.
type Target struct {
	ContainerID string
	PodIP       string
	Container   *v1.Container
}

// Manager keeps one goroutine per probe of every running container.
type Manager struct {
	Runner   Runner
	Recorder record.EventRecorder
	Log      *zap.Logger
	// Trigger asks the Pod's worker to sync: a result changed.
	Trigger func(uid types.UID)
	// Kill stops a container that failed its liveness or startup probe.
	Kill func(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID, reason string)

	mu      sync.Mutex
	workers map[key]*worker
	results map[resultKey]bool
}

type key struct {
	uid       types.UID
	container string
	kind      Kind
}

type resultKey struct {
	id   string
	kind Kind
}

type worker struct {
	id     string // the container instance probed
	cancel context.CancelFunc
}

func (m *Manager) result(id string, k Kind) (bool, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.results[resultKey{id, k}]
	return v, ok
}

func (m *Manager) set(uid types.UID, id string, k Kind, v bool) {
	m.mu.Lock()
	old, had := m.results[resultKey{id, k}]
	if m.results == nil {
		m.results = map[resultKey]bool{}
	}
	m.results[resultKey{id, k}] = v
	m.mu.Unlock()
	if (!had || old != v) && m.Trigger != nil {
		m.Trigger(uid)
	}
}

// State is a container's started and ready flags as upstream's status
// manager derives them from the probes: without a startup probe a running
// container has started; without a readiness probe a started one is ready.
func (m *Manager) State(c *v1.Container, containerID string, running bool) (started, ready bool) {
	if !running {
		return false, false
	}
	started = true
	if c.StartupProbe != nil {
		started, _ = m.result(containerID, Startup)
	}
	if !started {
		return false, false
	}
	if c.ReadinessProbe == nil {
		return true, true
	}
	ready, _ = m.result(containerID, Readiness)
	return true, ready
}

// Sync starts probe workers for the Pod's running containers and stops
// those of containers that are gone or restarted.
func (m *Manager) Sync(ctx context.Context, pod *v1.Pod, rp *runtime.Pod, podIP string) {
	want := map[key]Target{}
	add := func(c *v1.Container) {
		l := rp.Latest(c.Name)
		if l == nil || l.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			return
		}
		t := Target{ContainerID: l.Status.Id, PodIP: podIP, Container: c}
		for k, p := range map[Kind]*v1.Probe{Liveness: c.LivenessProbe, Readiness: c.ReadinessProbe, Startup: c.StartupProbe} {
			if p != nil {
				want[key{pod.UID, c.Name, k}] = t
			}
		}
	}
	if pod.DeletionTimestamp == nil {
		for i := range pod.Spec.Containers {
			add(&pod.Spec.Containers[i])
		}
		for i := range pod.Spec.InitContainers {
			if c := &pod.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
				add(c)
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.workers == nil {
		m.workers = map[key]*worker{}
	}
	for k, w := range m.workers {
		if k.uid != pod.UID {
			continue
		}
		if t, ok := want[k]; !ok || t.ContainerID != w.id {
			w.cancel()
			delete(m.workers, k)
		}
	}
	for k, t := range want {
		if _, ok := m.workers[k]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		m.workers[k] = &worker{id: t.ContainerID, cancel: cancel}
		started := time.Now()
		if l := rp.Latest(k.container); l != nil && l.Status.StartedAt > 0 {
			started = time.Unix(0, l.Status.StartedAt)
		}
		go m.run(wctx, pod, k, t, started)
	}
}

// Forget stops every probe of a Pod that is gone.
func (m *Manager) Forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.workers {
		if k.uid == uid {
			w.cancel()
			delete(m.workers, k)
			for rk := range m.results {
				if rk.id == w.id {
					delete(m.results, rk)
				}
			}
		}
	}
}

func probeOf(c *v1.Container, k Kind) *v1.Probe {
	switch k {
	case Liveness:
		return c.LivenessProbe
	case Readiness:
		return c.ReadinessProbe
	}
	return c.StartupProbe
}

// run probes one container until its context ends, as upstream's worker:
// nothing before initialDelaySeconds; liveness and readiness wait for a
// startup probe to succeed; a result flips after failureThreshold
// consecutive failures or successThreshold consecutive successes.
func (m *Manager) run(ctx context.Context, pod *v1.Pod, k key, t Target, started time.Time) {
	p := probeOf(t.Container, k.kind)
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	failT, succT := max(p.FailureThreshold, 1), max(p.SuccessThreshold, 1)
	if k.kind != Readiness {
		succT = 1
	}
	initial := map[Kind]bool{Liveness: true, Readiness: false, Startup: false}[k.kind]
	if _, ok := m.result(t.ContainerID, k.kind); !ok {
		m.set(pod.UID, t.ContainerID, k.kind, initial)
	}
	cur := initial
	var fails, oks int32
	delay := time.Until(started.Add(time.Duration(p.InitialDelaySeconds) * time.Second))
	timer := time.NewTimer(max(delay, 0))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		timer.Reset(period)
		if t.Container.StartupProbe != nil && k.kind != Startup {
			if s, _ := m.result(t.ContainerID, Startup); !s {
				continue
			}
		}
		if k.kind == Startup && cur {
			continue // a started container is not probed for startup again
		}
		timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
		pctx, cancel := context.WithTimeout(ctx, timeout)
		ok, out, err := m.Runner.Run(pctx, p, t)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if ok {
			oks, fails = oks+1, 0
		} else {
			fails, oks = fails+1, 0
			msg := out
			if err != nil {
				msg = err.Error()
			}
			m.event(pod, t.Container, v1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", k.kind, msg))
		}
		switch {
		case ok && !cur && oks >= succT:
			cur = true
			m.set(pod.UID, t.ContainerID, k.kind, true)
		case !ok && (cur || k.kind == Startup) && fails >= failT:
			cur = false
			m.set(pod.UID, t.ContainerID, k.kind, false)
			if k.kind == Liveness || k.kind == Startup {
				what := "liveness"
				if k.kind == Startup {
					what = "startup"
				}
				if m.Kill != nil {
					m.Kill(ctx, pod, t.Container, t.ContainerID, fmt.Sprintf("Container %s failed %s probe, will be restarted", t.Container.Name, what))
				}
				return // the restarted container gets a new worker
			}
		}
	}
}

func (m *Manager) event(pod *v1.Pod, c *v1.Container, typ, reason, msg string) {
	if m.Recorder == nil {
		return
	}
	ref := &v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		FieldPath: fmt.Sprintf("spec.containers{%s}", c.Name)}
	m.Recorder.Event(ref, typ, reason, msg)
}
