// Package pleg is the Pod lifecycle event generator: it relists the
// runtime's sandboxes and containers every period and, where the runtime
// streams container events (CRI GetContainerEvents), acts on those at once;
// each change wakes the owning Pod's worker.
package pleg

import (
	"context"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// PLEG watches the runtime for changes.
type PLEG struct {
	RT     internalapi.RuntimeService
	Notify func(types.UID)
	Period time.Duration
	Log    *zap.Logger

	seen   map[string]string    // object id -> state
	owners map[string]types.UID // object id -> Pod UID
}

// Relist compares one listing with the previous and notifies the Pods that changed.
func (p *PLEG) Relist(ctx context.Context) error {
	sbs, err := p.RT.ListPodSandbox(ctx, nil)
	if err != nil {
		return err
	}
	cs, err := p.RT.ListContainers(ctx, nil)
	if err != nil {
		return err
	}
	now := make(map[string]string, len(sbs)+len(cs))
	owner := map[string]types.UID{}
	for _, s := range sbs {
		uid := s.Labels[runtime.PodUIDLabel]
		if uid == "" {
			continue
		}
		now["s"+s.Id] = s.State.String()
		owner["s"+s.Id] = types.UID(uid)
	}
	for _, c := range cs {
		uid := c.Labels[runtime.PodUIDLabel]
		if uid == "" {
			continue
		}
		now["c"+c.Id] = c.State.String()
		owner["c"+c.Id] = types.UID(uid)
	}
	changed := map[types.UID]bool{}
	for id, st := range now {
		if p.seen[id] != st {
			changed[owner[id]] = true
		}
	}
	for id := range p.seen {
		if _, ok := now[id]; !ok {
			if uid, ok := p.owner(id); ok {
				changed[uid] = true
			}
		}
	}
	p.seen = now
	p.owners = owner
	for uid := range changed {
		p.Notify(uid)
	}
	return nil
}

func (p *PLEG) owner(id string) (types.UID, bool) {
	uid, ok := p.owners[id]
	return uid, ok
}

// Run relists every period until ctx ends, and follows the runtime's
// container event stream when it offers one.
func (p *PLEG) Run(ctx context.Context) {
	if p.Period == 0 {
		p.Period = time.Second
	}
	go p.events(ctx)
	t := time.NewTicker(p.Period)
	defer t.Stop()
	for {
		if err := p.Relist(ctx); err != nil && ctx.Err() == nil {
			p.Log.Debug("relist", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *PLEG) events(ctx context.Context) {
	for ctx.Err() == nil {
		ch := make(chan *runtimeapi.ContainerEventResponse, 64)
		done := make(chan error, 1)
		go func() { done <- p.RT.GetContainerEvents(ctx, ch, nil) }()
	loop:
		for {
			select {
			case ev := <-ch:
				if ev == nil {
					continue
				}
				if uid := podUID(ev); uid != "" {
					p.Notify(uid)
				}
			case err := <-done:
				if ctx.Err() == nil {
					p.Log.Debug("container events stream ended; relisting only", zap.Error(err))
				}
				break loop
			case <-ctx.Done():
				return
			}
		}
		select { // the relist covers us meanwhile
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func podUID(ev *runtimeapi.ContainerEventResponse) types.UID {
	if s := ev.GetPodSandboxStatus(); s != nil {
		if uid := s.GetMetadata().GetUid(); uid != "" {
			return types.UID(uid)
		}
		return types.UID(s.GetLabels()[runtime.PodUIDLabel])
	}
	return ""
}
