package criserver

import (
	"context"
	"fmt"
	"syscall"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs/pkg/errgrpc"
)

// taskInputs is what creating a container's task needs beyond its ID and
// IO: where its rootfs snapshot is and the spec's mount label. Kept from
// CreateContainer, StartContainer creates the task with one snapshotter
// call and the Create itself; the client's Container.NewTask would read
// the container record three times (load, mounts, spec) and decode the
// spec again. The request is the one NewTask builds without options (the
// runtime and its options come from the record, on containerd's side).
type taskInputs struct {
	snapshotter string
	snapshotKey string
	mountLabel  string
	// mounts: the rootfs mounts Prepare returned, nil when not kept (then
	// StartContainer asks the snapshotter).
	mounts []mount.Mount
}

// withTaskInputs records the finished spec's mount label (place it last).
func withTaskInputs(into *taskInputs) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux != nil {
			into.mountLabel = s.Linux.MountLabel
		}
		return nil
	}
}

func (s *Service) keepTaskInputs(id string, in taskInputs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taskIns == nil {
		s.taskIns = map[string]taskInputs{}
	}
	s.taskIns[id] = in
}

// takeTaskInputs returns (and forgets) the kept inputs, else reads them
// from the container record (a container created before a restart).
func (s *Service) takeTaskInputs(ctx context.Context, id string) (taskInputs, error) {
	s.mu.Lock()
	in, ok := s.taskIns[id]
	delete(s.taskIns, id)
	s.mu.Unlock()
	if ok {
		return in, nil
	}
	c, err := s.client.ContainerService().Get(ctx, id)
	if err != nil {
		return taskInputs{}, errgrpc.ToNative(err)
	}
	in = taskInputs{snapshotter: c.Snapshotter, snapshotKey: c.SnapshotKey}
	if in.snapshotKey != "" {
		sp, err := decodeSpec(c)
		if err != nil {
			return taskInputs{}, err
		}
		if sp.Linux != nil {
			in.mountLabel = sp.Linux.MountLabel
		}
	}
	return in, nil
}

// newInitTask creates the container's task (its init process, not yet
// started) as Container.NewTask does; the returned execProc drives it
// (exec ID "" is the init process in the task API). On error the IO is
// left to the caller.
func (s *Service) newInitTask(ctx context.Context, id string, in taskInputs, i cio.IO) (*execProc, uint32, error) {
	cfg := i.Config()
	req := &tasksapi.CreateTaskRequest{ContainerID: id, Terminal: cfg.Terminal, Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr}
	if in.snapshotKey != "" {
		if in.snapshotter == "" {
			return nil, 0, fmt.Errorf("container %s: rootfs snapshot without snapshotter: %w", id, errInvalidSpec)
		}
		mounts := in.mounts
		if mounts == nil {
			var err error
			if mounts, err = s.client.SnapshotService(in.snapshotter).Mounts(ctx, in.snapshotKey); err != nil {
				return nil, 0, fmt.Errorf("rootfs mounts: %w", err)
			}
		}
		for _, m := range mounts {
			opts := m.Options
			if in.mountLabel != "" {
				opts = append(opts, fmt.Sprintf("context=%q", in.mountLabel))
			}
			req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: opts})
		}
	}
	r, err := s.client.TaskService().Create(ctx, req)
	if err != nil {
		return nil, 0, errgrpc.ToNative(err)
	}
	return &execProc{tasks: s.client.TaskService(), cid: id, io: i}, r.GetPid(), nil
}

// startInit starts the init process; the IO stays with the caller.
func (p *execProc) startInit(ctx context.Context) error {
	_, err := p.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: p.cid})
	return errgrpc.ToNative(err)
}

// deleteInit kills the init process and deletes the task, as
// Task.Delete(WithProcessKill) does; the IO stays with the caller.
func (p *execProc) deleteInit(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exitCh := p.wait(ctx)
	if _, err := p.tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: p.cid, Signal: uint32(syscall.SIGKILL), All: true}); err == nil {
		<-exitCh
	}
	_, err := p.tasks.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: p.cid})
	return errgrpc.ToNative(err)
}
