// Package daemon runs a daemon's main loop beside its ops server and shuts
// both down within a deadline once the context ends.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/shared/ops"
	"github.com/nodesuite/nodesuite/shared/signals"
)

// ErrShutdownTimeout is returned when the main loop did not return within
// the graceful-shutdown deadline.
var ErrShutdownTimeout = errors.New("graceful shutdown deadline exceeded")

// Serve starts srv, runs body until it returns or ctx ends, then gives body
// up to timeout to finish and shuts srv down. body must return once its ctx
// is cancelled; returning nil then is a clean exit.
func Serve(ctx context.Context, log *zap.Logger, srv *ops.Server, timeout time.Duration, body func(context.Context) error) error {
	if err := srv.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- body(ctx) }()

	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		log.Info("shutting down", zap.String("cause", fmt.Sprint(context.Cause(ctx))), zap.Duration("deadline", timeout))
		select {
		case err = <-done:
		case <-time.After(timeout):
			err = fmt.Errorf("%w (%s)", ErrShutdownTimeout, timeout)
		}
	}
	sctx, cancel := signals.ShutdownContext(5 * time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = fmt.Errorf("ops server shutdown: %w", serr)
	}
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // the main loop reporting its own cancellation is a clean exit
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}
