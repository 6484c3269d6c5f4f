package criserver

import (
	"context"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer sends the image's stop signal (SIGTERM by default), waits
// up to timeout seconds, then SIGKILL. Stopping a stopped container succeeds.
func (s *Service) StopContainer(ctx context.Context, r *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		return &runtime.StopContainerResponse{}, nil // idempotent, as the CRI requires
	} else if err != nil {
		return nil, err
	}
	if err := s.stopContainer(ctx, rec, time.Duration(r.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

func (s *Service) stopContainer(ctx context.Context, rec *containerRec, timeout time.Duration) error {
	if rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return nil
	}
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, rec.ID)
	if err != nil {
		return toStatus(ignoreNotFound(err), "load container")
	}
	task, err := ctr.Task(cctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	} else if err != nil {
		return toStatus(err, "load task")
	}
	exitCh, err := task.Wait(cctx)
	if err != nil {
		return toStatus(ignoreNotFound(err), "wait task")
	}
	if timeout > 0 {
		sig := syscall.SIGTERM
		if img, err := ctr.Image(cctx); err == nil {
			if spec, err := img.Spec(cctx); err == nil && spec.Config.StopSignal != "" {
				if parsed, err := signal.ParseSignal(spec.Config.StopSignal); err == nil {
					sig = parsed
				}
			}
		}
		if err := task.Kill(cctx, sig); err != nil {
			if !exitedMeanwhile(cctx, task, exitCh, err) {
				return toStatus(err, "signal task")
			}
			return s.awaitRecorded(ctx, rec.ID)
		}
		select {
		case <-exitCh:
			return s.awaitRecorded(ctx, rec.ID)
		case <-time.After(timeout):
		case <-ctx.Done():
			return toStatus(ctx.Err(), "stop container")
		}
	}
	if err := task.Kill(cctx, syscall.SIGKILL, containerd.WithKillAll); err != nil {
		if !exitedMeanwhile(cctx, task, exitCh, err) {
			return toStatus(err, "kill task")
		}
		return s.awaitRecorded(ctx, rec.ID)
	}
	select {
	case <-exitCh:
	case <-ctx.Done():
		return toStatus(ctx.Err(), "stop container")
	}
	return s.awaitRecorded(ctx, rec.ID)
}

// exitedMeanwhile reports whether a failed kill only raced with the task's
// own exit: the exit monitor deletes an exited task (finishExit), and
// containerd closes that task's shim connection on delete, so a kill in
// between fails (NotFound, or "ttrpc: closed" with no error type to match)
// although nothing is left to stop. It consumes exitCh.
func exitedMeanwhile(ctx context.Context, task containerd.Task, exitCh <-chan containerd.ExitStatus, err error) bool {
	if errdefs.IsNotFound(err) {
		return true
	}
	select {
	case <-exitCh:
		return true
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
		return false
	}
	_, serr := task.Status(ctx)
	return errdefs.IsNotFound(serr)
}

// awaitRecorded waits briefly for the monitor to record the exit, so a
// status right after Stop reports EXITED with its exit code.
func (s *Service) awaitRecorded(ctx context.Context, id string) error {
	s.mu.Lock()
	_, monitored := s.ios[id]
	s.mu.Unlock()
	if done := s.liveDone(id); monitored && done != nil {
		// The monitor shows the exit once it is recorded (finishExit).
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
		}
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		rec, err := s.getContainer(ctx, id)
		if err != nil || rec.Finished != 0 && rec.Labels[labelFinished] != "" {
			return nil
		}
		s.mu.Lock()
		_, monitored := s.ios[id]
		s.mu.Unlock()
		if !monitored {
			// No monitor (e.g. started before a restart and not yet adopted): record here.
			if t := rec; t.State == runtime.ContainerState_CONTAINER_EXITED {
				s.recordExit(s.ctx(ctx), id, uint32(t.ExitCode), time.Unix(0, t.Finished))
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func ignoreNotFound(err error) error {
	if errdefs.IsNotFound(err) {
		return nil
	}
	return err
}
