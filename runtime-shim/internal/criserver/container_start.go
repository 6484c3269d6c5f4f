package criserver

import (
	"context"
	"fmt"
	"strconv"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer creates and starts the task with its output wired to the
// CRI log, then monitors it until exit.
func (s *Service) StartContainer(ctx context.Context, r *runtime.StartContainerRequest) (_ *runtime.StartContainerResponse, retErr error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	defer s.opLk.lock(rec.ID)()
	if rec.State != runtime.ContainerState_CONTAINER_CREATED {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %s, not CREATED", rec.ID, rec.State)
	}
	sb, err := s.getSandbox(ctx, rec.SandboxID)
	if err != nil {
		return nil, err
	}
	if sb.State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, status.Errorf(codes.FailedPrecondition, "sandbox %s is not ready", sb.ID)
	}
	cctx := s.ctx(ctx)
	tin, err := s.takeTaskInputs(cctx, rec.ID)
	if err != nil {
		return nil, toStatus(err, "load container")
	}
	// The FIFOs outlive this request: containerd/fifo closes them when the open ctx ends.
	cio, err := openContainerIO(context.WithoutCancel(cctx), s.fifoDir(), rec.ID, rec.LogPath, rec.Config.GetTty(), rec.Config.GetStdin())
	if err != nil {
		return nil, toStatus(err, "container io")
	}
	fail := func(reason string, err error) error {
		cio.close()
		_ = s.setLabels(context.WithoutCancel(ctx), rec.ID, map[string]string{
			labelStarted: nowNanos(), labelFinished: nowNanos(), labelExitCode: "128", labelReason: "StartError"})
		return toStatus(err, reason)
	}
	task, pid, err := s.newInitTask(cctx, rec.ID, tin, cio.dio)
	if err != nil {
		return nil, fail("create task", err)
	}
	exitCh := task.wait(context.WithoutCancel(cctx))
	// Known to the monitors before it runs: lists then never miss it.
	s.setLive(rec.ID, pid)
	// Taken before Start: the exit time comes from the runc shim, and a
	// process that exits at once must not read as finished before started.
	started := nowNanos()
	// Recorded while runc starts it (two waits that overlap); a failed
	// start overwrites it below.
	recorded := make(chan error, 1)
	go func() { recorded <- s.setLabels(cctx, rec.ID, map[string]string{labelStarted: started}) }()
	if err := task.startInit(cctx); err != nil {
		<-recorded
		s.dropLive(rec.ID)
		_ = task.deleteInit(context.WithoutCancel(cctx))
		return nil, fail("start task", err)
	}
	if err := <-recorded; err != nil {
		return nil, toStatus(err, "record start")
	}
	s.mu.Lock()
	s.ios[rec.ID] = cio
	s.mu.Unlock()
	go s.monitor(rec.ID, exitCh, cio)
	s.emit(ctx, rec.ID, rec.SandboxID, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	s.log.Info("container started", zap.String("id", rec.ID))
	return &runtime.StartContainerResponse{}, nil
}

// monitor waits for the task's exit and completes it (finishExit).
func (s *Service) monitor(id string, exitCh <-chan containerd.ExitStatus, cio *containerIO) {
	st := <-exitCh
	ctx := s.ctx(context.Background())
	drain := func() {}
	if cio != nil {
		drain = func() { waitTimeout(cio.wait, 2*time.Second) }
	}
	s.finishExit(ctx, id, st.ExitCode(), st.ExitTime(), drain)
	if m := s.metaOf(s.ctrs, id); m != nil { // else removed meanwhile
		s.emit(ctx, id, m.labels[labelSandboxID], runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	s.mu.Lock()
	delete(s.ios, id)
	s.mu.Unlock()
	if cio != nil {
		cio.close()
	}
}

// finishExit makes an exit visible only once it is complete, as
// containerd's CRI does (it updates a container's status after deleting
// its task, which waits for the IO): the log drained, so whoever sees
// EXITED reads the whole log; the exit recorded in the labels; the task
// deleted. Until then the container reads RUNNING. This matters to the
// upstream kubelet: it relists a Pod right after StartContainer, and a
// container that exits at once, seen EXITED by that relist, got its
// previous instance removed (the kubelet keeps one dead instance per
// name) while the Pod status published with it, kept through the whole
// back-off, still named that instance as lastState.
func (s *Service) finishExit(ctx context.Context, id string, code uint32, at time.Time, drain func()) {
	if at.IsZero() {
		at = time.Now()
	}
	drain()
	s.recordExit(ctx, id, code, at)
	s.liveExited(id, code, at)
}

// recordExit writes the exit to the labels, deletes the task (its runc
// shim process goes away with the Pod's last task), then shows the exit
// in the kept labels: the exit is durable before the task is gone, and
// visible after.
func (s *Service) recordExit(ctx context.Context, id string, code uint32, at time.Time) {
	unlock := s.opLk.lock(id)
	defer unlock()
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return
	}
	if at.IsZero() {
		at = time.Now()
	}
	labels := map[string]string{labelFinished: strconv.FormatInt(at.UnixNano(), 10), labelExitCode: strconv.FormatUint(uint64(code), 10)}
	if _, err := ctr.SetLabels(ctx, labels); err != nil {
		s.log.Warn("recording exit", zap.String("id", id), zap.Error(err))
		return
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx); err != nil {
			s.log.Warn("deleting exited task", zap.String("id", id), zap.Error(err))
		}
	}
	s.noteLabels(id, labels)
}

func waitTimeout(f func(), d time.Duration) {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

var _ = fmt.Sprint
