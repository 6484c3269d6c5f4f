package nodestatus

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
)

// leaseRenewer renews the node's Lease as upstream's lease controller
// (k8s.io/component-helpers/apimachinery/lease) does: every interval with
// 4% jitter, updating the last Lease it wrote and falling back to get or
// create it (backing off 200ms doubling to 7s) on conflict or error. That
// controller takes the whole clientset, which is why it is not used here.
type leaseRenewer struct {
	client   apiclient.Leases
	name     string // also the holder identity
	ns       string
	duration int32
	interval time.Duration
	clock    clock.Clock
	// prepare fills in what the API may not know yet (the Node owner).
	prepare func(*coordinationv1.Lease) error
	log     *zap.Logger

	latest *coordinationv1.Lease
}

const (
	leaseUpdateRetries = 5
	leaseMaxBackoff    = 7 * time.Second
)

func (r *leaseRenewer) run(ctx context.Context) {
	wait.JitterUntilWithContext(ctx, r.sync, r.interval, 0.04, true)
}

// sync renews once.
func (r *leaseRenewer) sync(ctx context.Context) {
	if r.latest != nil {
		err := r.update(ctx, r.latest)
		if err == nil {
			return
		}
		r.log.Info("renew lease from the last one written failed; reading it again", zap.Error(err))
	}
	l, created := r.ensureWithBackoff(ctx)
	r.latest = l
	if l != nil && !created {
		if err := r.update(ctx, l); err != nil {
			r.log.Warn("renew lease; retrying next period", zap.Error(err), zap.Duration("interval", r.interval))
		}
	}
}

func (r *leaseRenewer) ensureWithBackoff(ctx context.Context) (*coordinationv1.Lease, bool) {
	sleep := 100 * time.Millisecond
	for {
		l, created, err := r.ensure(ctx)
		if err == nil {
			return l, created
		}
		sleep = min(2*sleep, leaseMaxBackoff)
		r.log.Warn("ensure lease exists; retrying", zap.Error(err), zap.Duration("in", sleep))
		select {
		case <-ctx.Done():
			return nil, false
		case <-r.clock.After(sleep):
		}
	}
}

func (r *leaseRenewer) ensure(ctx context.Context) (*coordinationv1.Lease, bool, error) {
	l, err := r.client.Get(ctx, r.name, metav1.GetOptions{})
	if err == nil {
		return l, false, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("get lease: %w", err)
	}
	l, err = r.client.Create(ctx, r.next(nil), metav1.CreateOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("create lease: %w", err)
	}
	return l, true, nil
}

// update writes a renewed copy of base, reading the Lease again on conflict.
func (r *leaseRenewer) update(ctx context.Context, base *coordinationv1.Lease) error {
	var err error
	for range leaseUpdateRetries {
		var l *coordinationv1.Lease
		if l, err = r.client.Update(ctx, r.next(base), metav1.UpdateOptions{}); err == nil {
			r.latest = l
			return nil
		}
		if !apierrors.IsConflict(err) {
			continue
		}
		if base, _ = r.ensureWithBackoff(ctx); base == nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("update lease %d times: %w", leaseUpdateRetries, err)
}

// next is base (or a new Lease) renewed now.
func (r *leaseRenewer) next(base *coordinationv1.Lease) *coordinationv1.Lease {
	var l *coordinationv1.Lease
	if base == nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.ns},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(r.name)}}
	} else {
		l = base.DeepCopy()
	}
	l.Spec.LeaseDurationSeconds = ptr.To(r.duration)
	l.Spec.RenewTime = &metav1.MicroTime{Time: r.clock.Now()}
	if r.prepare != nil {
		_ = r.prepare(l) // the owner is best effort; the Lease is renewed anyway
	}
	return l
}
