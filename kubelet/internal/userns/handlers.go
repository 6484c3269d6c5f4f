package userns

import (
	"context"
	"fmt"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"
)

// refreshAfter spaces the Status reads Handlers makes itself: upstream
// reads the runtime's status every 5 s.
const refreshAfter = 5 * time.Second

// Handlers is the runtime's handlers as its CRI Status last reported them,
// so that syncing a Pod makes no Status call of its own. The node status
// refreshes it (Update). When it lacks the handler asked about (the runtime
// was not ready yet, or no node status is posted, standalone) it reads the
// Status itself, at most once per refreshAfter.
type Handlers struct {
	// Status is the runtime's CRI Status call.
	Status func(ctx context.Context, verbose bool) (*runtimeapi.StatusResponse, error)
	Clock  clock.PassiveClock // nil is the real clock

	mu       sync.Mutex
	handlers []*runtimeapi.RuntimeHandler
	read     time.Time // of the last Status, reported or read here
}

func (h *Handlers) now() time.Time {
	if h.Clock == nil {
		return time.Now()
	}
	return h.Clock.Now()
}

// Update takes the handlers of a Status response. Like upstream, a runtime
// that is not ready keeps the handlers it reported before.
func (h *Handlers) Update(resp *runtimeapi.StatusResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.read = h.now()
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.RuntimeReady && c.Status {
			h.handlers = resp.GetRuntimeHandlers()
			return
		}
	}
}

// SupportsUserNamespaces is upstream's HandlerSupportsUserNamespaces: no
// handler list (an older runtime) means no support, and a handler the
// runtime does not list is an error.
func (h *Handlers) SupportsUserNamespaces(ctx context.Context, name string) (bool, error) {
	rh, listed, stale := h.lookup(name)
	if rh == nil && stale && h.Status != nil {
		h.mu.Lock()
		h.read = h.now() // a failed read waits its turn too
		h.mu.Unlock()
		if resp, err := h.Status(ctx, false); err == nil {
			h.Update(resp)
			rh, listed, _ = h.lookup(name)
		}
	}
	switch {
	case rh != nil:
		return rh.GetFeatures().GetUserNamespaces(), nil
	case listed:
		return false, fmt.Errorf("the handler %q is not known", name)
	}
	return false, nil
}

// lookup finds the named handler, and tells whether the runtime lists any
// and whether the list is due for a refresh.
func (h *Handlers) lookup(name string) (rh *runtimeapi.RuntimeHandler, listed, stale bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	stale = h.read.IsZero() || h.now().Sub(h.read) >= refreshAfter
	for _, x := range h.handlers {
		if x.Name == name {
			return x, true, stale
		}
	}
	return nil, len(h.handlers) > 0, stale
}
