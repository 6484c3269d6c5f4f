package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// ErrExited is wrapped when a process dies before it is ready.
var ErrExited = errors.New("process exited")

// Running is a started process; Done is closed when it exits while this
// harness is still its parent.
type Running struct {
	ProcState
	Done chan struct{}
	err  error
}

// StartDetached starts p in a session of its own (so it outlives `up` and the
// terminal), output appended to logDir/<name>.log, and records it in st
// before returning.
func StartDetached(p Process, logDir string, env []string, st *State) (*Running, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	logPath := filepath.Join(logDir, p.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", p.Name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s %s %s\n", time.Now().UTC().Format(time.RFC3339), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	r := &Running{
		ProcState: ProcState{Name: p.Name, PID: cmd.Process.Pid, StartTicks: startTicks(cmd.Process.Pid), Path: p.Path, Log: logPath},
		Done:      make(chan struct{}),
	}
	go func() { r.err = cmd.Wait(); close(r.Done) }()
	if err := st.Update(func(s *State) { s.Processes = append(s.Processes, r.ProcState) }); err != nil {
		return r, err
	}
	return r, nil
}

// WaitReady polls p.Health until it answers 200, the process exits, or the
// timeout passes. The error carries the tail of the process's log, where the
// reason almost always is.
func WaitReady(ctx context.Context, log *zap.Logger, r *Running, health string, timeout time.Duration) error {
	if health == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Health endpoints on 127.0.0.1 with the cluster's own certificates: the
	// probe only asks "is it up", it trusts nothing it reads.
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // readiness probe on loopback
	}}
	start := time.Now()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				log.Info("ready", zap.String("process", r.Name), zap.Duration("after", time.Since(start).Round(time.Millisecond)))
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-r.Done:
			return fmt.Errorf("%w: %s (%v); last log lines:\n%s", ErrExited, r.Name, r.err, Tail(r.Log, 15))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (last: %s): %w; last log lines:\n%s", r.Name, timeout, last, ctx.Err(), Tail(r.Log, 15))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// startTicks is the process start time in clock ticks since boot, or 0.
func startTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after the last ')'
	// are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
