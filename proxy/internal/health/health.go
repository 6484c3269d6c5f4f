// Package health is kube-proxy's health server: /healthz and /livez answer
// JSON with lastUpdated/currentTime and 503 once a queued change has waited
// longer than the timeout (2 x syncPeriod) without a sync, as
// k8s.io/kubernetes/pkg/proxy/healthcheck's ProxyHealthServer does.
package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
)

// toBeDeletedTaint marks a node the cluster autoscaler is removing: load
// balancers should stop sending to it.
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// ErrStale is returned by Check when a sync is overdue.
var ErrStale = errors.New("proxy rules not synced in time")

// ProxierHealth is one family's status.
type ProxierHealth struct {
	LastUpdated time.Time `json:"lastUpdated"`
	Healthy     bool      `json:"healthy"`
}

// ProxyHealth is the JSON body, field for field kube-proxy's.
type ProxyHealth struct {
	LastUpdated  time.Time                     `json:"lastUpdated"`
	CurrentTime  time.Time                     `json:"currentTime"`
	NodeEligible *bool                         `json:"nodeEligible,omitempty"`
	Healthy      bool                          `json:"healthy"`
	Status       map[v1.IPFamily]ProxierHealth `json:"status,omitempty"`
}

// Server tracks sync health.
type Server struct {
	timeout time.Duration
	now     func() time.Time
	node    func() *v1.Node

	mu            sync.RWMutex
	lastUpdated   map[v1.IPFamily]time.Time
	oldestPending map[v1.IPFamily]time.Time
}

// New returns a tracker; node returns this node (nil until known).
func New(timeout time.Duration, now func() time.Time, node func() *v1.Node) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{timeout: timeout, now: now, node: node,
		lastUpdated: map[v1.IPFamily]time.Time{}, oldestPending: map[v1.IPFamily]time.Time{}}
}

// QueuedUpdate records that a change is waiting for a sync.
func (s *Server) QueuedUpdate(f v1.IPFamily) { s.QueuedUpdateAt(f, s.now()) }

// QueuedUpdateAt is QueuedUpdate with the time already read (the clock
// is a system call in some guests, user-mode-linux among them).
func (s *Server) QueuedUpdateAt(f v1.IPFamily, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.oldestPending[f]; !ok {
		s.oldestPending[f] = t
	}
}

// Updated records a successful sync.
func (s *Server) Updated(f v1.IPFamily) { s.UpdatedAt(f, s.now()) }

// UpdatedAt is Updated with the time already read.
func (s *Server) UpdatedAt(f v1.IPFamily, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.oldestPending, f)
	s.lastUpdated[f] = t
}

// Health computes the current status.
func (s *Server) Health() ProxyHealth {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := ProxyHealth{Healthy: true, Status: map[v1.IPFamily]ProxierHealth{}, CurrentTime: s.now()}
	for f, t := range s.lastUpdated {
		if t.After(h.LastUpdated) {
			h.LastUpdated = t
		}
		ok := true
		if q, pending := s.oldestPending[f]; pending && h.CurrentTime.Sub(q) >= s.timeout {
			ok, h.Healthy = false, false
		}
		h.Status[f] = ProxierHealth{LastUpdated: t, Healthy: ok}
	}
	return h
}

// Check is the same condition as an error, for the ops server's checks.
func (s *Server) Check(*http.Request) error {
	if h := s.Health(); !h.Healthy {
		return fmt.Errorf("%w: last sync %s", ErrStale, h.LastUpdated.Format(time.RFC3339))
	}
	return nil
}

func (s *Server) nodeEligible() bool {
	if s.node == nil {
		return false
	}
	n := s.node()
	if n == nil || n.DeletionTimestamp != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == toBeDeletedTaint {
			return false
		}
	}
	return true
}

// Handler serves /healthz (sync health and node eligibility) and /livez
// (sync health only).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, withNode bool) {
		h := s.Health()
		ok := h.Healthy
		if withNode {
			e := s.nodeEligible()
			h.NodeEligible = &e
			ok = ok && e
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			w.WriteHeader(http.StatusOK)
			h.LastUpdated = h.CurrentTime // as upstream: a healthy proxy is "updated now"
		}
		_ = json.NewEncoder(w).Encode(h)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { serve(w, true) })
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { serve(w, false) })
	return mux
}
