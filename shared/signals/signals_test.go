package signals

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

func TestFirstSignalCancelsSecondExits(t *testing.T) {
	exited := make(chan int, 1)
	exit = func(code int) { exited <- code }
	defer func() { exit = func(int) {} }()

	ctx, stop := Context(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first SIGTERM did not cancel the context")
	}
	var r *Received
	if !errors.As(context.Cause(ctx), &r) || r.Signal != syscall.SIGTERM {
		t.Fatalf("cause: %v", context.Cause(ctx))
	}
	select {
	case <-exited:
		t.Fatal("exited on the first signal")
	case <-time.After(50 * time.Millisecond):
	}
	_ = syscall.Kill(syscall.Getpid(), syscall.SIGINT)
	select {
	case code := <-exited:
		if code != ExitCodeForced {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second signal did not exit")
	}
}
