package criserver

import (
	"context"
	"fmt"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"go.uber.org/zap"
)

// Recover rebuilds the in-memory index after a (re)start. Invariants:
//
//  1. Everything durable is in containerd: each sandbox and container is a
//     containerd container with kind/name/sandbox labels and its CRI config
//     as an extension; start and exit times and exit codes are labels.
//  2. The only memory state is the name reservations, the index of
//     container IDs, the FIFO copiers of running containers and the event
//     subscribers; the first three are rebuilt here, subscribers reconnect.
//  3. Nothing is restarted or stopped: a running task is adopted by
//     reopening its FIFOs (paths derived from the container ID, see
//     fifoSet) and waiting on it; a task that exited while we were down gets
//     its exit recorded and is deleted, as the monitor would have done; a
//     task left CREATED by an interrupted start is deleted, leaving the
//     container CREATED.
//  4. Network namespaces are bind mounts under --state-dir and the pause
//     processes hold them; they need no action.
//  5. A sandbox record in containerd's sandbox store (what lets a Pod's
//     tasks join the pause task's shim) lives while its pause container
//     does; one left by an interrupted RunPodSandbox or RemovePodSandbox is
//     deleted.
func (s *Service) Recover(ctx context.Context) error {
	cctx := s.ctx(ctx)
	all, err := s.client.ContainerService().List(cctx)
	if err != nil {
		return fmt.Errorf("listing containerd containers: %w", err)
	}
	ts, err := s.tasks(ctx)
	if err != nil {
		return fmt.Errorf("listing tasks: %w", err)
	}
	adopted, recorded := 0, 0
	for _, c := range all {
		kind := c.Labels[labelKind]
		if kind != kindSandbox && kind != kindContainer {
			continue // not ours
		}
		if n := c.Labels[labelName]; n != "" {
			s.mu.Lock()
			s.names[n] = c.ID
			s.mu.Unlock()
		}
		if kind == kindSandbox {
			s.rememberSandbox(c)
			if t := ts[c.ID]; t != nil && t.Status == tasktypes.Status_RUNNING {
				s.adoptPause(cctx, c.ID, t.Pid)
			}
			continue
		}
		s.rememberContainer(c)
		t := ts[c.ID]
		if t == nil {
			continue
		}
		rec, err := containerFrom(c, t)
		if err != nil {
			s.log.Warn("unreadable container", zap.String("id", c.ID), zap.Error(err))
			continue
		}
		switch t.Status {
		case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
			if err := s.adopt(cctx, rec); err != nil {
				s.log.Warn("adopting running container", zap.String("id", c.ID), zap.Error(err))
				continue
			}
			adopted++
		case tasktypes.Status_STOPPED:
			var at = t.ExitedAt.AsTime()
			s.recordExit(cctx, c.ID, t.ExitStatus, at)
			recorded++
		case tasktypes.Status_CREATED:
			if ctr, err := s.client.LoadContainer(cctx, c.ID); err == nil {
				if task, err := ctr.Task(cctx, nil); err == nil {
					_, _ = task.Delete(cctx)
				}
			}
		}
	}
	s.dropOrphanSandboxRecords(cctx, all)
	s.log.Info("recovered state", zap.Int("names", len(s.names)), zap.Int("adopted", adopted), zap.Int("exitsRecorded", recorded))
	return nil
}

func (s *Service) adopt(ctx context.Context, rec *containerRec) error {
	cio, err := openContainerIO(context.WithoutCancel(ctx), s.fifoDir(), rec.ID, rec.LogPath, rec.Config.GetTty(), rec.Config.GetStdin())
	if err != nil {
		return err
	}
	ctr, err := s.client.LoadContainer(ctx, rec.ID)
	if err != nil {
		cio.close()
		return err
	}
	task, err := ctr.Task(ctx, cio.attacher())
	if err != nil {
		cio.close()
		return err
	}
	exitCh, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		cio.close()
		return err
	}
	s.setLive(rec.ID, rec.PID)
	s.mu.Lock()
	s.ios[rec.ID] = cio
	s.mu.Unlock()
	go s.monitor(rec.ID, exitCh, cio)
	return nil
}

// adoptPause watches a running pause task again after a restart.
func (s *Service) adoptPause(ctx context.Context, id string, pid uint32) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return
	}
	exitCh, err := task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		s.log.Warn("watching pause task", zap.String("id", id), zap.Error(err))
		return
	}
	s.watchPause(id, pid, exitCh)
}

// dropOrphanSandboxRecords deletes our sandbox records whose pause
// container is gone (invariant 5).
func (s *Service) dropOrphanSandboxRecords(ctx context.Context, all []containers.Container) {
	recs, err := s.client.SandboxStore().List(ctx)
	if err != nil {
		s.log.Warn("listing sandbox records", zap.Error(err))
		return
	}
	live := make(map[string]bool, len(all))
	for _, c := range all {
		live[c.ID] = true
	}
	for _, r := range recs {
		if r.Labels[labelKind] != kindSandbox || live[r.ID] {
			continue
		}
		if err := s.client.SandboxStore().Delete(ctx, r.ID); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("deleting orphan sandbox record", zap.String("id", r.ID), zap.Error(err))
		}
	}
}
