// Package pleg is the Pod lifecycle event generator: it relists the
// runtime's sandboxes and containers every period and, where the runtime
// streams container events (CRI GetContainerEvents), acts on those at once;
// each change wakes the owning Pod's worker.
package pleg

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// PLEG watches the runtime for changes.
type PLEG struct {
	RT internalapi.RuntimeService
	// Notify tells a Pod's worker that its runtime objects changed before
	// at: a worker that read the runtime after at has seen the change.
	Notify func(uid types.UID, at time.Time)
	Period time.Duration
	Log    *zap.Logger

	seen   map[string]string    // object id -> state
	owners map[string]types.UID // object id -> Pod UID

	// announced holds the states container events reported (with the
	// objects' states the runtime sends along), so the next relist does
	// not notify the same change a second time; entries a relist has not
	// matched within two relists are dropped.
	mu        sync.Mutex
	announced map[string]announcement
	relists   int
}

type announcement struct {
	state  string // "" once deleted
	relist int    // the relist count when announced
}

// gone is the state of an object the runtime deleted.
const gone = ""

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
	// Taken after the listing: every change it shows happened before at. A
	// change made while it ran may be later than the start, so a time taken
	// before could let a worker whose read fell in between skip a change it
	// never saw.
	at := time.Now()
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
	p.mu.Lock()
	p.relists++
	// known tells whether an event already announced id in state st,
	// consuming the announcement.
	known := func(id, st string) bool {
		a, ok := p.announced[id]
		if ok && a.state == st {
			delete(p.announced, id)
			return true
		}
		return false
	}
	changed := map[types.UID]bool{}
	for id, st := range now {
		if p.seen[id] != st && !known(id, st) {
			changed[owner[id]] = true
		}
	}
	for id := range p.seen {
		if _, ok := now[id]; !ok && !known(id, gone) {
			if uid, ok := p.owner(id); ok {
				changed[uid] = true
			}
		}
	}
	for id, a := range p.announced {
		if p.relists-a.relist >= 2 {
			delete(p.announced, id)
		}
	}
	p.mu.Unlock()
	p.seen = now
	p.owners = owner
	for uid := range changed {
		p.Notify(uid, at)
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
					p.announce(ev)
					p.Notify(uid, eventTime(ev))
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

// announce records the states an event reports: the Pod's sandbox and
// containers as the runtime sent them, and the event's object if deleted.
func (p *PLEG) announce(ev *runtimeapi.ContainerEventResponse) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.announced == nil {
		p.announced = map[string]announcement{}
	}
	if sb := ev.GetPodSandboxStatus(); sb != nil && sb.GetId() != "" {
		p.announced["s"+sb.GetId()] = announcement{sb.GetState().String(), p.relists}
	}
	for _, c := range ev.GetContainersStatuses() {
		if c.GetId() != "" {
			p.announced["c"+c.GetId()] = announcement{c.GetState().String(), p.relists}
		}
	}
	if ev.GetContainerEventType() == runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
		id := ev.GetContainerId()
		if sb := ev.GetPodSandboxStatus(); sb != nil && sb.GetId() == id {
			p.announced["s"+id] = announcement{gone, p.relists}
		} else {
			p.announced["c"+id] = announcement{gone, p.relists}
		}
	}
}

// eventTime is when the runtime sent the event, after it recorded the
// change (containerd's CRI and ours stamp it so); now if it is unset.
func eventTime(ev *runtimeapi.ContainerEventResponse) time.Time {
	if ev.GetCreatedAt() > 0 {
		return time.Unix(0, ev.GetCreatedAt())
	}
	return time.Now()
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
