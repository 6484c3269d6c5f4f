// Package daemontest checks a daemon binary the way an operator's supervisor
// sees it: it starts, answers /healthz, and exits 0 on SIGTERM.
package daemontest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build compiles the main package in dir (a path relative to the test's
// working directory, usually ".") into a temporary binary.
func Build(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "daemon-under-test")
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// FreePort returns a loopback address nobody listens on right now.
func FreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// StartHealthzSIGTERM runs bin with args, waits for http://healthzAddr/healthz
// to answer 200 "ok", sends SIGTERM and requires exit status 0 within
// deadline. It returns the process's combined output for further checks.
func StartHealthzSIGTERM(t *testing.T, bin string, args []string, healthzAddr string, deadline time.Duration) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		body, err := get(ctx, "http://"+healthzAddr+"/healthz")
		if err == nil && body == "ok" {
			break
		}
		lastErr = fmt.Errorf("body %q: %v", body, err)
		select {
		case e := <-exited:
			t.Fatalf("%s exited before serving /healthz: %v\n%s", bin, e, out.String())
		case <-ctx.Done():
			t.Fatalf("/healthz never answered ok: %v\n%s", lastErr, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(deadline):
		t.Fatalf("still running %s after SIGTERM\n%s", deadline, out.String())
	}
	return out.String()
}

func get(ctx context.Context, url string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), err
}

// RunArgs runs bin with args and returns its exit code, stdout and stderr.
func RunArgs(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}
