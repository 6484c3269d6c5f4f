package criserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// maxExecSyncOutput caps each captured stream, as containerd's CRI does.
const maxExecSyncOutput = 16 * 1024 * 1024

type execOptions struct {
	cmd     []string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	tty     bool
	resize  <-chan remotecommand.TerminalSize
	timeout time.Duration
}

// ExecSync runs a command in a running container and returns its output
// and exit code; on timeout the process is killed and DeadlineExceeded returned.
func (s *Service) ExecSync(ctx context.Context, r *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	var out, errb limitedBuffer
	out.max, errb.max = maxExecSyncOutput, maxExecSyncOutput
	code, err := s.execInContainer(ctx, r.GetContainerId(), execOptions{
		cmd: r.GetCmd(), stdout: &out, stderr: &errb, timeout: time.Duration(r.GetTimeout()) * time.Second})
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: out.Bytes(), Stderr: errb.Bytes(), ExitCode: int32(code)}, nil
}

func (s *Service) execInContainer(ctx context.Context, id string, o execOptions) (uint32, error) {
	rec, err := s.getContainer(ctx, id)
	if err != nil {
		return 0, err
	}
	if rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return 0, status.Errorf(codes.FailedPrecondition, "container %s is not running", rec.ID)
	}
	cctx := s.ctx(ctx)
	spec, err := s.processSpec(cctx, rec.ID)
	if err != nil {
		return 0, toStatus(err, "container spec")
	}
	pspec := *spec
	pspec.Args = o.cmd
	pspec.Terminal = o.tty
	execID := newID()[:32]
	var stdin io.Reader
	var procRef = make(chan *execProc, 1)
	if o.stdin != nil {
		// On EOF tell the shim to close the process's stdin (it keeps its
		// own write end of the FIFO, so closing ours is not enough).
		stdin = &eofReader{r: o.stdin, onEOF: func() {
			p := <-procRef
			procRef <- p
			_ = p.closeStdin(context.WithoutCancel(cctx))
		}}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, o.stdout, o.stderr), cio.WithFIFODir(s.fifoDir())}
	if o.tty {
		opts = append(opts, cio.WithTerminal)
	}
	proc, err := s.newExec(cctx, rec.ID, execID, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return 0, toStatus(err, "exec")
	}
	procRef <- proc
	dctx := context.WithoutCancel(cctx)
	exited := false // the exit was seen: nothing left to kill
	defer func() { _ = proc.delete(dctx, exited) }()
	exitCh := proc.wait(dctx)
	if err := proc.start(cctx); err != nil {
		return 0, toStatus(err, "start exec")
	}
	if o.resize != nil {
		go func() {
			for sz := range o.resize {
				_ = proc.resize(dctx, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	var timeout <-chan time.Time
	if o.timeout > 0 {
		t := time.NewTimer(o.timeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case st := <-exitCh:
		exited = st.Error() == nil
		// Let the copiers drain the FIFOs before the caller reads buffers.
		waitTimeout(proc.io.Wait, 2*time.Second)
		code, _, err := st.Result()
		if err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return 0, toStatus(err, "exec result")
		}
		return code, nil
	case <-timeout:
		_ = proc.kill(dctx, syscall.SIGKILL)
		exited = (<-exitCh).Error() == nil
		return 0, status.Errorf(codes.DeadlineExceeded, "command %q timed out after %s", o.cmd, o.timeout)
	case <-ctx.Done():
		_ = proc.kill(dctx, syscall.SIGKILL)
		exited = (<-exitCh).Error() == nil
		return 0, toStatus(ctx.Err(), "exec")
	}
}

// limitedBuffer keeps the first max bytes and drops the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

var _ = fmt.Sprint

type eofReader struct {
	r     io.Reader
	once  bool
	onEOF func()
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !e.once {
		e.once = true
		go e.onEOF()
	}
	return n, err
}

// decodeSpec reads the OCI spec stored in a container record.
func decodeSpec(c containers.Container) (*oci.Spec, error) {
	if c.Spec == nil {
		return nil, fmt.Errorf("container %s has no spec: %w", c.ID, errdefs.ErrNotFound)
	}
	v, err := typeurl.UnmarshalAny(c.Spec)
	if err != nil {
		return nil, err
	}
	sp, ok := v.(*specs.Spec)
	if !ok || sp.Process == nil {
		return nil, fmt.Errorf("container %s: spec is %T without a process: %w", c.ID, v, errdefs.ErrInvalidArgument)
	}
	return sp, nil
}
