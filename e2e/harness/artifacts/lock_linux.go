package artifacts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on path, waiting until ctx ends; the
// kernel drops it if the process dies, so a killed build never wedges the cache.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("artifacts: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("artifacts: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("artifacts: waiting for the cache lock %s: %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// buildRunningInto reports whether a live `go` process has an argument
// under dir (as `go build -o dir/` has).
func buildRunningInto(dir string) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	self := fmt.Sprint(os.Getpid())
	for _, e := range ents {
		if e.Name() == self || e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if filepath.Base(args[0]) != "go" {
			continue
		}
		for _, a := range args[1:] {
			if strings.HasPrefix(a, dir) {
				return true
			}
		}
	}
	return false
}
