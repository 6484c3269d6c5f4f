package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/hostos"
)

// Options choose what a stack runs.
type Options struct {
	// Dir holds everything of the stack; created if missing. Keep it short:
	// the shim socket dir goes under it when it fits.
	Dir string
	// Runtime is Containerd (its own CRI) or Ours (runtime-shim).
	Runtime Runtime
	// Artifacts has the binaries (containerd, shim, runc, CNI plugins).
	Artifacts *artifacts.Artifacts
	// ShimBinary is our runtime-shim, for Runtime Ours.
	ShimBinary string
	// Mirror is the local registry's URL (http://127.0.0.1:PORT); empty
	// means no mirrors (pulls then go nowhere: the machine has no registry access).
	Mirror string
	// Bridge and Subnet make the stack's network private: a bridge name
	// (at most 15 characters) and a CIDR nothing else uses.
	Bridge string
	Subnet string
	// SandboxImage defaults to DefaultSandboxImage.
	SandboxImage string
	// ReadyTimeout bounds the wait for the CRI server (default 60s).
	ReadyTimeout time.Duration
}

// ErrInvalidOptions is wrapped by every error about bad Options.
var ErrInvalidOptions = errors.New("invalid runtime stack options")

// Stack is a running private runtime stack.
type Stack struct {
	Layout Layout
	// CRISocket is the CRI server's unix socket path.
	CRISocket string
	// ContainerdSocket is containerd's own API socket.
	ContainerdSocket string
	opts             Options
	log              *zap.Logger
	procs            []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (o *Options) validate() error {
	if o.Dir == "" || !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("%w: Dir %q must be an absolute path", ErrInvalidOptions, o.Dir)
	}
	switch o.Runtime {
	case Containerd:
	case Ours:
		if o.ShimBinary == "" {
			return fmt.Errorf("%w: Runtime ours needs ShimBinary", ErrInvalidOptions)
		}
		if _, err := os.Stat(o.ShimBinary); err != nil {
			return fmt.Errorf("%w: runtime-shim binary: %w (make build)", ErrInvalidOptions, err)
		}
	default:
		return fmt.Errorf("%w: Runtime %q: want containerd or ours", ErrInvalidOptions, o.Runtime)
	}
	if o.Artifacts == nil {
		return fmt.Errorf("%w: no Artifacts", ErrInvalidOptions)
	}
	if o.Bridge == "" || len(o.Bridge) > 15 {
		return fmt.Errorf("%w: Bridge %q must be 1-15 characters", ErrInvalidOptions, o.Bridge)
	}
	if _, _, err := net.ParseCIDR(o.Subnet); err != nil {
		return fmt.Errorf("%w: Subnet: %w", ErrInvalidOptions, err)
	}
	if o.SandboxImage == "" {
		o.SandboxImage = DefaultSandboxImage
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	return nil
}

// NewLayout places the stack in dir, with the shim socket dir inside it
// when the path is short enough, else in a short directory under /tmp.
func NewLayout(dir string) (Layout, error) {
	l := Layout{Dir: dir, SocketDir: filepath.Join(dir, "s")}
	if len(l.SocketDir) > 38 {
		d, err := os.MkdirTemp("/tmp", "artifacts-s-")
		if err != nil {
			return Layout{}, fmt.Errorf("runtime: %w", err)
		}
		l.SocketDir = d
		// Record it so Stop from another process finds it.
		if err := os.WriteFile(filepath.Join(dir, "socket-dir"), []byte(d), 0o644); err != nil {
			return Layout{}, fmt.Errorf("runtime: %w", err)
		}
	}
	return l, nil
}

// Start writes the stack's configuration, starts containerd (and the
// runtime-shim for Ours), and waits until the CRI server answers Status
// with the runtime ready. On any failure it stops what it started.
func Start(ctx context.Context, log *zap.Logger, opts Options) (*Stack, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	// Whatever a killed run left in this dir goes first.
	if err := Cleanup(ctx, log, opts.Dir, opts.Bridge); err != nil {
		return nil, err
	}
	l, err := NewLayout(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Stack{Layout: l, opts: opts, log: log, ContainerdSocket: l.ContainerdSocket()}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		_ = s.Stop(context.Background())
		return nil, err
	}
	return s, nil
}

func (s *Stack) writeConfig() error {
	l, a := s.Layout, s.opts.Artifacts
	for _, d := range []string{l.Root(), l.State(), l.RuncRoot(), l.CertsDir(), l.CNIConfDir(), l.CNIDataDir(), l.Logs(), l.SocketDir, l.Opt()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
	}
	files := map[string]string{
		l.Config(): ContainerdConfig(ContainerdParams{
			Paths: l.ContainerdPaths(), CRI: s.opts.Runtime == Containerd, RuncBinary: a.Bin("runc"),
			CNIBinDir: a.CNIBinDir, SandboxImage: s.opts.SandboxImage,
		}),
	}
	cni, err := CNIConfList(CNIParams{Name: "nodesuite-" + s.opts.Bridge, Bridge: s.opts.Bridge, Subnet: s.opts.Subnet, DataDir: l.CNIDataDir()})
	if err != nil {
		return err
	}
	files[filepath.Join(l.CNIConfDir(), "10-"+s.opts.Bridge+".conflist")] = cni
	if s.opts.Mirror != "" {
		for _, r := range MirroredRegistries {
			files[filepath.Join(l.CertsDir(), r, "hosts.toml")] = HostsTOML(r, s.opts.Mirror)
		}
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return fmt.Errorf("runtime: %w", err)
		}
	}
	return nil
}

// ShimArgs are the runtime-shim's flags, exactly as the team contract
// lists them.
func ShimArgs(l Layout, a *artifacts.Artifacts, sandboxImage string) []string {
	return []string{
		"--socket", l.ShimCRISocket(),
		"--containerd-address", l.ContainerdSocket(),
		"--containerd-namespace", "k8s.io",
		"--sandbox-image", sandboxImage,
		"--cni-conf-dir", l.CNIConfDir(),
		"--cni-bin-dir", a.CNIBinDir,
		"--registry-config-dir", l.CertsDir(),
		"--root-dir", l.ShimRoot(),
		"--state-dir", l.ShimState(),
		"--streaming-address", "127.0.0.1:0",
		"--cgroup-driver", "cgroupfs",
		"--ops-bind-address", "127.0.0.1:0",
	}
}

func (s *Stack) start(ctx context.Context) error {
	a := s.opts.Artifacts
	// containerd finds containerd-shim-runc-v2 on PATH.
	env := append(os.Environ(), "PATH="+a.BinDir+":"+os.Getenv("PATH"))
	if err := s.spawn("containerd", a.Bin("containerd"), []string{"--config", s.Layout.Config()}, env); err != nil {
		return err
	}
	if err := s.waitSocket(ctx, s.Layout.ContainerdSocket()); err != nil {
		return err
	}
	s.CRISocket = s.Layout.ContainerdSocket()
	if s.opts.Runtime == Ours {
		for _, d := range []string{s.Layout.ShimRoot(), s.Layout.ShimState()} {
			if err := os.MkdirAll(d, 0o711); err != nil {
				return fmt.Errorf("runtime: %w", err)
			}
		}
		if err := s.spawn("runtime-shim", s.opts.ShimBinary, ShimArgs(s.Layout, a, s.opts.SandboxImage), env); err != nil {
			return err
		}
		s.CRISocket = s.Layout.ShimCRISocket()
	}
	return s.waitCRI(ctx)
}

// spawn starts a supervised process logging to logs/<name>.log, in its own
// process group so a terminal's ^C reaches the harness, which then stops it.
func (s *Stack) spawn(name, bin string, args, env []string) error {
	logf, err := os.OpenFile(filepath.Join(s.Layout.Logs(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("runtime: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	if err := os.WriteFile(filepath.Join(s.Layout.Dir, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	s.log.Info("started", zap.String("process", name), zap.Int("pid", cmd.Process.Pid), zap.String("log", logf.Name()))
	return nil
}

// ErrExited is returned when a process of the stack exits while starting.
var ErrExited = errors.New("process exited")

func (s *Stack) exited() error {
	for _, p := range s.procs {
		select {
		case <-p.done:
			return fmt.Errorf("runtime: %s: %w (%v); see %s", p.name, ErrExited, p.err, filepath.Join(s.Layout.Logs(), p.name+".log"))
		default:
		}
	}
	return nil
}

func (s *Stack) waitSocket(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	for {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil
		}
		if err := s.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runtime: waiting for %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitCRI waits until the CRI server says its runtime is ready. Network
// readiness is not required: the CNI config is there, but a server may
// report it only after its first sync.
func (s *Stack) waitCRI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+s.CRISocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("runtime: CRI client: %w", err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := rt.Status(cctx, &runtimeapi.StatusRequest{})
		ccancel()
		if err == nil {
			ready := false
			for _, c := range st.GetStatus().GetConditions() {
				if c.GetType() == runtimeapi.RuntimeReady && c.GetStatus() {
					ready = true
				}
			}
			if ready {
				s.log.Info("CRI ready", zap.String("socket", s.CRISocket), zap.String("runtime", string(s.opts.Runtime)))
				return nil
			}
			err = fmt.Errorf("runtime not ready: %v", st.GetStatus().GetConditions())
		}
		last = err
		if err := s.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runtime: waiting for CRI on %s: %w (last: %v)", s.CRISocket, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops every process of the stack and removes what it left in the
// kernel: containers, mounts under its dir, the bridge. Idempotent.
func (s *Stack) Stop(ctx context.Context) error {
	var errs []error
	// The shim first: it may still be talking to containerd.
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		if err := stopProc(ctx, p.cmd.Process.Pid, p.done); err != nil {
			errs = append(errs, fmt.Errorf("runtime: stop %s: %w", p.name, err))
		}
	}
	s.procs = nil
	if err := Cleanup(ctx, s.log, s.Layout.Dir, s.opts.Bridge); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopProc sends SIGTERM, then SIGKILL after 10s, and waits for the exit.
func stopProc(ctx context.Context, pid int, done <-chan struct{}) error {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	alive := func() bool {
		if done != nil {
			select {
			case <-done:
				return false
			default:
				return true
			}
		}
		return syscall.Kill(pid, 0) == nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive() {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Cleanup removes whatever a stack in dir left, whether it was stopped,
// crashed or killed: its processes (found by pid files and by command lines
// naming dir), runc containers in its runc root, mounts under dir and its
// socket dir, the bridge, and the state it wrote. Logs stay. Idempotent.
func Cleanup(ctx context.Context, log *zap.Logger, dir, bridge string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return deleteLink(bridge)
	}
	l := Layout{Dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, "socket-dir")); err == nil {
		l.SocketDir = strings.TrimSpace(string(b))
	}
	var errs []error
	// Daemons by pid file; the process must still name dir (a pid may
	// have been reused).
	for _, name := range []string{"runtime-shim", "containerd"} {
		pf := filepath.Join(dir, name+".pid")
		b, err := os.ReadFile(pf)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && cmdlineMentions(pid, dir) {
			if err := stopProc(ctx, pid, nil); err != nil {
				errs = append(errs, fmt.Errorf("runtime: stop %s: %w", name, err))
			}
		}
		_ = os.Remove(pf)
	}
	// Containers: runc's state says which processes are ours; killing
	// them (not only the shims) leaves nothing running from this stack.
	for _, pid := range containerPids(l.RuncRoot()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	// Shims name our containerd socket in their command line.
	for _, pid := range pidsMentioning(dir, "containerd-shim-runc-v2", "containerd", "runtime-shim") {
		if err := stopProc(ctx, pid, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if l.SocketDir != "" && !strings.HasPrefix(l.SocketDir, dir) {
		_ = unmountUnder(l.SocketDir)
		_ = os.RemoveAll(l.SocketDir)
	}
	if err := deleteLink(bridge); err != nil {
		errs = append(errs, err)
	}
	// Everything but the logs.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() == "logs" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("runtime: cleanup: %w", err))
		}
	}
	if log != nil && len(errs) == 0 {
		log.Debug("runtime stack cleaned", zap.String("dir", dir))
	}
	return errors.Join(errs...)
}

func cmdlineMentions(pid int, s string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), s)
}

// pidsMentioning lists processes running one of the programs (by base
// name) whose command line has s.
func pidsMentioning(s string, programs ...string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !slices.Contains(programs, filepath.Base(strings.TrimSuffix(exe, " (deleted)"))) {
			continue
		}
		if cmdlineMentions(pid, s) {
			out = append(out, pid)
		}
	}
	return out
}

// containerPids reads each container's init pid from runc's state under
// root (<root>/<id>/state.json, field "init_process_pid").
func containerPids(root string) []int {
	ents, _ := os.ReadDir(root)
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "state.json"))
		if err != nil {
			continue
		}
		const key = `"init_process_pid":`
		i := strings.Index(string(b), key)
		if i < 0 {
			continue
		}
		rest := strings.TrimLeft(string(b[i+len(key):]), " ")
		end := strings.IndexAny(rest, ",}")
		if end < 0 {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(rest[:end])); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	all, err := hostos.MountPoints()
	if err != nil {
		return fmt.Errorf("runtime: %w", err)
	}
	var mounts []string
	for _, mp := range all {
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("runtime: unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// deleteLink removes the stack's bridge if it exists.
func deleteLink(name string) error {
	if name == "" {
		return nil
	}
	if err := hostos.DeleteLink(name); err != nil {
		return fmt.Errorf("runtime: delete bridge %s: %w", name, err)
	}
	return nil
}
