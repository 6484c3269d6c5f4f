package criserver

import (
	"context"
	"fmt"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// execProc is one exec'd process, driven through containerd's task API.
// The client's Task and Process wrappers would first read the container
// record and the task, and read the process state again before deleting
// it: three round trips through containerd per exec for what this shim
// already knows (the container's process spec, kept in s.procs; the
// exit, which it waited for). The calls are the ones the wrappers make.
type execProc struct {
	tasks tasksapi.TasksClient
	cid   string
	id    string
	io    cio.IO
}

// processSpec is the container's process spec, read once: exec only
// needs the process, which UpdateContainerResources does not change.
func (s *Service) processSpec(ctx context.Context, id string) (*specs.Process, error) {
	s.mu.Lock()
	p := s.procs[id]
	s.mu.Unlock()
	if p != nil {
		return p, nil
	}
	c, err := s.client.ContainerService().Get(ctx, id)
	if err != nil {
		return nil, err
	}
	sp, err := decodeSpec(c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.ctrs[id]; known { // not removed meanwhile
		if s.procs == nil {
			s.procs = map[string]*specs.Process{}
		}
		s.procs[id] = sp.Process
	}
	return sp.Process, nil
}

// newExec creates the process (not started), as Task.Exec does.
func (s *Service) newExec(ctx context.Context, cid, execID string, spec *specs.Process, ioCreate cio.Creator) (*execProc, error) {
	i, err := ioCreate(execID)
	if err != nil {
		return nil, err
	}
	any, err := typeurl.MarshalAnyToProto(spec)
	if err != nil {
		i.Cancel()
		i.Close()
		return nil, err
	}
	cfg := i.Config()
	if _, err := s.client.TaskService().Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: cid, ExecID: execID,
		Terminal: cfg.Terminal, Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Spec: any}); err != nil {
		i.Cancel()
		i.Wait()
		i.Close()
		return nil, errgrpc.ToNative(err)
	}
	return &execProc{tasks: s.client.TaskService(), cid: cid, id: execID, io: i}, nil
}

func (p *execProc) start(ctx context.Context) error {
	if _, err := p.tasks.Start(ctx, &tasksapi.StartRequest{ContainerID: p.cid, ExecID: p.id}); err != nil {
		p.io.Cancel()
		p.io.Wait()
		p.io.Close()
		return errgrpc.ToNative(err)
	}
	return nil
}

// wait delivers the exit once, as Process.Wait does.
func (p *execProc) wait(ctx context.Context) <-chan containerd.ExitStatus {
	c := make(chan containerd.ExitStatus, 1)
	go func() {
		defer close(c)
		r, err := p.tasks.Wait(ctx, &tasksapi.WaitRequest{ContainerID: p.cid, ExecID: p.id})
		if err != nil {
			c <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, errgrpc.ToNative(err))
			return
		}
		c <- *containerd.NewExitStatus(r.ExitStatus, r.ExitedAt.AsTime(), nil)
	}()
	return c
}

func (p *execProc) kill(ctx context.Context, sig syscall.Signal) error {
	_, err := p.tasks.Kill(ctx, &tasksapi.KillRequest{ContainerID: p.cid, ExecID: p.id, Signal: uint32(sig)})
	return errgrpc.ToNative(err)
}

func (p *execProc) closeStdin(ctx context.Context) error {
	_, err := p.tasks.CloseIO(ctx, &tasksapi.CloseIORequest{ContainerID: p.cid, ExecID: p.id, Stdin: true})
	return errgrpc.ToNative(err)
}

func (p *execProc) resize(ctx context.Context, w, h uint32) error {
	_, err := p.tasks.ResizePty(ctx, &tasksapi.ResizePtyRequest{ContainerID: p.cid, ExecID: p.id, Width: w, Height: h})
	return errgrpc.ToNative(err)
}

// delete removes the process, killing it first unless its exit was seen,
// then releases the IO, as Process.Delete(WithProcessKill) does.
func (p *execProc) delete(ctx context.Context, exited bool) error {
	if !exited {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		exitCh := p.wait(ctx)
		if err := p.kill(ctx, syscall.SIGKILL); err == nil {
			<-exitCh
		}
	}
	_, err := p.tasks.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: p.cid, ExecID: p.id})
	p.io.Cancel()
	p.io.Wait()
	p.io.Close()
	if err != nil {
		return fmt.Errorf("delete exec %s: %w", p.id, errgrpc.ToNative(err))
	}
	return nil
}
