package criserver

import (
	"context"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// liveTask is what this shim's own monitors know of a task it started or
// adopted: it runs until its exit arrives on the task's wait channel.
// The list calls read these instead of asking containerd for every task
// (one round trip to every runc shim on the node per list); the per-ID
// calls (ContainerStatus, PodSandboxStatus) still ask containerd.
type liveTask struct {
	pid    uint32
	exited bool
	code   uint32
	at     time.Time
	done   chan struct{} // closed when the exit shows (liveExited)
}

func (s *Service) setLive(id string, pid uint32) {
	s.mu.Lock()
	s.live[id] = &liveTask{pid: pid, done: make(chan struct{})}
	s.mu.Unlock()
}

func (s *Service) liveExited(id string, code uint32, at time.Time) {
	s.mu.Lock()
	if l := s.live[id]; l != nil && !l.exited {
		l.exited, l.code, l.at = true, code, at
		close(l.done)
	}
	s.mu.Unlock()
}

// liveDone is closed once the monitors show id's exit; nil when they do
// not watch id.
func (s *Service) liveDone(id string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.live[id]; l != nil {
		return l.done
	}
	return nil
}

func (s *Service) dropLive(id string) {
	s.mu.Lock()
	delete(s.live, id)
	s.mu.Unlock()
}

// liveSnapshot is the monitors' view as task states; read it before the
// labels (see taskThenLabels).
func (s *Service) liveSnapshot() map[string]*tasktypes.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]*tasktypes.Process, len(s.live))
	for id, l := range s.live {
		m[id] = l.process(id)
	}
	return m
}

func (l *liveTask) process(id string) *tasktypes.Process {
	p := &tasktypes.Process{ID: id, Pid: l.pid, Status: tasktypes.Status_RUNNING}
	if l.exited {
		p.Status, p.ExitStatus, p.ExitedAt = tasktypes.Status_STOPPED, l.code, timestamppb.New(l.at)
	}
	return p
}

// watchPause records the pause task's exit, so that a sandbox whose pause
// died reads NOTREADY.
func (s *Service) watchPause(id string, pid uint32, exitCh <-chan containerd.ExitStatus) {
	s.setLive(id, pid)
	go func() {
		st := <-exitCh
		s.liveExited(id, st.ExitCode(), st.ExitTime())
	}()
}

// taskOf reads one task from containerd when the monitors do not know it.
func (s *Service) taskOf(ctx context.Context, id string) *tasktypes.Process {
	t, err := s.taskState(ctx, id)
	if err != nil {
		return nil
	}
	return t
}
