package syncer

import (
	"context"
	"sync/atomic"
	"time"
)

// Runner calls fn when triggered, at most once per minInterval, and at
// least once per maxInterval; triggers that arrive while waiting coalesce.
// It is the part of k8s.io/kubernetes/pkg/util/async's
// BoundedFrequencyRunner this proxy needs, without importing k8s.io/kubernetes.
// Do runs other work on the same goroutine between calls of fn, without
// counting as one.
type Runner struct {
	fn       func()
	min, max time.Duration
	trigger  chan struct{}
	work     chan func()
	// holding is set while a triggered run waits out minInterval.
	holding atomic.Bool
}

// Holding says a triggered run is waiting out minInterval: the change is
// held on purpose, and other work need not wait for it.
func (r *Runner) Holding() bool { return r.holding.Load() }

// holdFor is how long a run triggered now must wait for minInterval since
// the last run began. The clock is read only when there is a minimum
// interval: in some guests (user-mode-linux) each read is a system call.
func (r *Runner) holdFor(last time.Time) time.Duration {
	if r.min <= 0 || last.IsZero() {
		return 0
	}
	return r.min - time.Since(last)
}

// NewRunner builds a runner; Run starts it.
func NewRunner(fn func(), minInterval, maxInterval time.Duration) *Runner {
	return &Runner{fn: fn, min: minInterval, max: maxInterval, trigger: make(chan struct{}, 1), work: make(chan func())}
}

// Trigger asks for a run soon; it never blocks.
func (r *Runner) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Do hands f to Run's goroutine, which runs it before its next call of fn
// (or while waiting out minInterval). It returns false if ctx ended first.
func (r *Runner) Do(ctx context.Context, f func()) bool {
	select {
	case r.work <- f:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run calls fn until ctx ends: once at start, then on triggers and timeouts.
func (r *Runner) Run(ctx context.Context) {
	last := time.Time{}
	periodic := time.NewTimer(0)
	defer periodic.Stop()
	for {
		// held is work that came while a change was pending: the change
		// is synced first.
		var held func()
		select {
		case <-ctx.Done():
			return
		case f := <-r.work:
			select {
			case <-r.trigger:
				held = f
			default:
				f()
				continue
			}
		case <-r.trigger:
		case <-periodic.C:
		}
		if wait := r.holdFor(last); wait > 0 {
			t := time.NewTimer(wait)
			r.holding.Store(true)
		waiting:
			for {
				select {
				case <-ctx.Done():
					t.Stop()
					r.holding.Store(false)
					return
				case f := <-r.work:
					f()
				case <-t.C:
					break waiting
				}
			}
			r.holding.Store(false)
		}
		// Triggers that came in while waiting are served by this run.
		select {
		case <-r.trigger:
		default:
		}
		if r.min > 0 {
			last = time.Now()
		}
		r.fn()
		if held != nil {
			held()
		}
		if !periodic.Stop() {
			select {
			case <-periodic.C:
			default:
			}
		}
		periodic.Reset(r.max)
	}
}
