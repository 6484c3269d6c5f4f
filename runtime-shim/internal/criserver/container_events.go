package criserver

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// events fans container lifecycle events out to GetContainerEvents
// subscribers; a slow subscriber loses events rather than blocking the runtime.
type events struct {
	mu   sync.Mutex
	subs map[chan *runtime.ContainerEventResponse]struct{}
}

func (e *events) subscribe() (chan *runtime.ContainerEventResponse, func()) {
	ch := make(chan *runtime.ContainerEventResponse, 256)
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[chan *runtime.ContainerEventResponse]struct{}{}
	}
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	return ch, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}
}

func (e *events) publish(ev *runtime.ContainerEventResponse) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (e *events) active() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.subs) > 0
}

// emit publishes an event for a container or sandbox with the Pod's current status.
func (s *Service) emit(ctx context.Context, id, sandboxID string, typ runtime.ContainerEventType) {
	if !s.events.active() {
		return
	}
	ctx = context.WithoutCancel(ctx)
	ev := &runtime.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: time.Now().UnixNano()}
	if sb, err := s.getSandbox(ctx, sandboxID); err == nil {
		ev.PodSandboxStatus = sandboxStatus(sb)
		if cs, err := s.listContainers(ctx); err == nil {
			for _, c := range cs {
				if c.SandboxID == sb.ID {
					ev.ContainersStatuses = append(ev.ContainersStatuses, containerStatus(c))
				}
			}
		}
	}
	s.events.publish(ev)
}

// GetContainerEvents streams lifecycle events until the client goes away.
func (s *Service) GetContainerEvents(_ *runtime.GetEventsRequest, st grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	ch, cancel := s.events.subscribe()
	defer cancel()
	for {
		select {
		case <-st.Context().Done():
			return nil
		case ev := <-ch:
			if err := st.Send(ev); err != nil {
				return err
			}
		}
	}
}
