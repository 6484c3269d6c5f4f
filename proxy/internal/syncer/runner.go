package syncer

import (
	"context"
	"time"
)

// Runner calls fn when triggered, at most once per minInterval, and at
// least once per maxInterval; triggers that arrive while waiting coalesce.
// It is the part of k8s.io/kubernetes/pkg/util/async's
// BoundedFrequencyRunner this proxy needs, without importing k8s.io/kubernetes.
type Runner struct {
	fn       func()
	min, max time.Duration
	trigger  chan struct{}
}

// NewRunner builds a runner; Run starts it.
func NewRunner(fn func(), minInterval, maxInterval time.Duration) *Runner {
	return &Runner{fn: fn, min: minInterval, max: maxInterval, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a run soon; it never blocks.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run calls fn until ctx ends: once at start, then on triggers and timeouts.
func (r *Runner) Run(ctx context.Context) {
	last := time.Time{}
	periodic := time.NewTimer(0)
	defer periodic.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-periodic.C:
		}
		if wait := r.min - time.Since(last); !last.IsZero() && wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		// Triggers that came in while waiting are served by this run.
		select {
		case <-r.trigger:
		default:
		}
		last = time.Now()
		r.fn()
		if !periodic.Stop() {
			select {
			case <-periodic.C:
			default:
			}
		}
		periodic.Reset(r.max)
	}
}
