// Package signals turns SIGTERM/SIGINT into a context cancellation: the first
// signal starts a graceful shutdown, a second one exits at once.
package signals

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ExitCodeForced is the status of a process that got a second signal.
const ExitCodeForced = 130

// exit is the seam tests replace.
var exit = os.Exit

// Context returns a context cancelled by the first SIGTERM or SIGINT. A second
// signal calls os.Exit(ExitCodeForced) without waiting for cleanup, as an
// operator who presses Ctrl-C twice expects.
func Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	stop := func() { signal.Stop(ch); cancel(context.Canceled) }
	go func() {
		select {
		case s := <-ch:
			cancel(&Received{Signal: s})
		case <-ctx.Done():
			return
		}
		<-ch
		exit(ExitCodeForced)
	}()
	return ctx, stop
}

// Received is the cancellation cause when a signal ended the context.
type Received struct{ Signal os.Signal }

func (r *Received) Error() string { return "received signal " + r.Signal.String() }

// ShutdownContext returns a fresh context with the graceful-shutdown deadline,
// for the cleanup that runs after the main context is already cancelled.
func ShutdownContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}
