package criserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// streamRuntime adapts the Service to cri-streaming's Runtime, which does
// all SPDY/WebSocket handling.
type streamRuntime struct{ s *Service }

// NewStreamingServer builds the exec/attach/port-forward server on addr.
func (s *Service) NewStreamingServer(addr string) (streaming.Server, error) {
	cfg := streaming.DefaultConfig
	cfg.Addr = addr
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		return nil, err
	}
	s.stream = srv
	return srv, nil
}

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	o := execOptions{cmd: cmd, tty: tty, resize: resize}
	if in != nil {
		o.stdin = in
	}
	if out != nil {
		o.stdout = out
	}
	if errw != nil {
		o.stderr = errw
	}
	code, err := r.s.execInContainer(ctx, id, o)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCodeError{code: int(code)}
	}
	return nil
}

// exitCodeError satisfies k8s.io/utils/exec.ExitError, which cri-streaming
// uses to report a non-zero exit to the client.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}
func (e exitCodeError) String() string  { return e.Error() }
func (e exitCodeError) Exited() bool    { return true }
func (e exitCodeError) ExitStatus() int { return e.code }

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	rec, err := r.s.getContainer(ctx, id)
	if err != nil {
		return err
	}
	r.s.mu.Lock()
	cio := r.s.ios[rec.ID]
	r.s.mu.Unlock()
	if cio == nil || rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "container %s is not running", rec.ID)
	}
	var o, e io.Writer
	if out != nil {
		o = out
	}
	if errw != nil {
		e = errw
	}
	detach := cio.attach(o, e)
	defer detach()
	if resize != nil {
		go func() {
			cctx := r.s.ctx(context.WithoutCancel(ctx))
			ctr, err := r.s.client.LoadContainer(cctx, rec.ID)
			if err != nil {
				return
			}
			task, err := ctr.Task(cctx, nil)
			if err != nil {
				return
			}
			for sz := range resize {
				_ = task.Resize(cctx, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	done := make(chan struct{})
	if in != nil && cio.dio.Stdin != nil {
		go func() {
			_, _ = io.Copy(cio.dio.Stdin, in)
			if rec.Config.GetStdinOnce() {
				// EOF reaches the container only when every write end of the
				// stdin FIFO is closed: ours, and the runc shim's (CloseIO).
				_ = cio.dio.Stdin.Close()
				r.s.closeStdin(context.WithoutCancel(ctx), rec.ID)
			}
			close(done)
		}()
	}
	// Attach ends when the container exits (then its output is flushed for
	// at most a second) or the client goes away.
	exited := make(chan struct{})
	go func() {
		cctx := r.s.ctx(ctx)
		if ctr, err := r.s.client.LoadContainer(cctx, rec.ID); err == nil {
			if task, err := ctr.Task(cctx, nil); err == nil {
				if ch, err := task.Wait(cctx); err == nil {
					select {
					case <-ch:
					case <-ctx.Done():
					}
				}
			}
		}
		waitTimeout(cio.done.Wait, time.Second)
		close(exited)
	}()
	select {
	case <-exited:
	case <-ctx.Done():
	case <-done:
		if rec.Config.GetStdinOnce() {
			<-exited
		}
	}
	return nil
}

func (r streamRuntime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	sb, err := r.s.getSandbox(ctx, id)
	if err != nil {
		return err
	}
	defer stream.Close()
	var conn net.Conn
	dial := func(cnins.NetNS) error {
		var err error
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("localhost:%d", port), 10*time.Second)
		return err
	}
	if sb.NetNS == "" {
		err = dial(nil)
	} else {
		err = netns.LoadNetNS(sb.NetNS).Do(dial)
	}
	if err != nil {
		return fmt.Errorf("port-forward to %d in sandbox %s: %w", port, sb.ID, err)
	}
	defer conn.Close()
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(conn, stream); errc <- err }()
	go func() { _, err := io.Copy(stream, conn); errc <- err }()
	select {
	case <-errc:
	case <-ctx.Done():
	}
	return nil
}

// Exec returns the streaming URL for an exec session.
func (s *Service) Exec(ctx context.Context, r *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	if s.stream == nil {
		return nil, status.Error(codes.Unavailable, "streaming server not running")
	}
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", rec.ID)
	}
	return s.stream.GetExec(r)
}

// Attach returns the streaming URL for an attach session.
func (s *Service) Attach(ctx context.Context, r *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	if s.stream == nil {
		return nil, status.Error(codes.Unavailable, "streaming server not running")
	}
	if _, err := s.getContainer(ctx, r.GetContainerId()); err != nil {
		return nil, err
	}
	return s.stream.GetAttach(r)
}

// PortForward returns the streaming URL for a port-forward session.
func (s *Service) PortForward(ctx context.Context, r *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	if s.stream == nil {
		return nil, status.Error(codes.Unavailable, "streaming server not running")
	}
	if _, err := s.getSandbox(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return s.stream.GetPortForward(r)
}

func (s *Service) closeStdin(ctx context.Context, id string) {
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, id)
	if err != nil {
		return
	}
	task, err := ctr.Task(cctx, nil)
	if err != nil {
		return
	}
	_ = task.CloseIO(cctx, containerd.WithStdinCloser)
}
