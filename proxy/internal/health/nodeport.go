package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// ServiceServers are the health check node port servers of LoadBalancer
// Services with externalTrafficPolicy Local: the cloud load balancer probes
// them and sends traffic only to nodes answering 200 (local endpoints > 0),
// as kube-proxy's ServiceHealthServer.
type ServiceServers struct {
	log  *zap.Logger
	bind string // host part; "" = all addresses

	mu      sync.Mutex
	servers map[int32]*svcServer
	// keys are the Service ports with a health check node port (nil
	// before the first Sync).
	keys sets.Set[servicestate.Key]
}

type svcServer struct {
	srv *http.Server
	// ln is closed here too: srv.Close misses a listener that Serve, on
	// its goroutine, has not taken yet, and the port would stay bound.
	ln     net.Listener
	mu     sync.Mutex
	name   types.NamespacedName
	locals int
}

// NewServiceServers returns an empty set.
func NewServiceServers(log *zap.Logger, bind string) *ServiceServers {
	return &ServiceServers{log: log, bind: bind, servers: map[int32]*svcServer{}}
}

// Sync opens, updates and closes servers to match st. changed lists the
// Service ports that changed since the last call; full says to look at all
// of st (the first call must be full). Only the Service ports that have a
// health check node port are looked at again, so a sync of one change at
// thousands of Services does not walk them all.
func (s *ServiceServers) Sync(st *servicestate.State, changed sets.Set[servicestate.Key], full bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wants := func(k servicestate.Key) bool {
		sp := st.Services[k]
		return sp != nil && sp.HealthCheckNodePort > 0 && sp.ExternalPolicyLocal
	}
	if full || s.keys == nil {
		s.keys = sets.New[servicestate.Key]()
		for k := range st.Services {
			if wants(k) {
				s.keys.Insert(k)
			}
		}
	} else {
		for k := range changed {
			if wants(k) {
				s.keys.Insert(k)
			} else {
				s.keys.Delete(k)
			}
		}
	}
	if s.keys.Len() == 0 && len(s.servers) == 0 {
		return nil
	}
	// kube-proxy reports, per Service, the number of distinct ready local
	// endpoint addresses (its LocalReadyEndpoints): an endpoint appears once
	// per port and family in the State, so count addresses, not entries, and
	// leave serving-terminating fallbacks out.
	want := map[int32]*svcServer{}
	ips := map[int32]map[netip.Addr]bool{}
	for k := range s.keys {
		sp := st.Services[k]
		if sp == nil {
			continue // gone without being named changed: the next full Sync drops it
		}
		port := sp.HealthCheckNodePort
		if want[port] == nil {
			want[port] = &svcServer{name: types.NamespacedName{Namespace: sp.Name.Namespace, Name: sp.Name.Name}}
			ips[port] = map[netip.Addr]bool{}
		}
		for _, ep := range st.LocalEndpoints[k] {
			if ep.Ready {
				ips[port][ep.IP] = true
			}
		}
	}
	for port, t := range want {
		t.locals = len(ips[port])
	}
	var errs []error
	for port, cur := range s.servers {
		if _, ok := want[port]; !ok {
			cur.close()
			delete(s.servers, port)
		}
	}
	for port, w := range want {
		cur := s.servers[port]
		if cur == nil {
			ln, err := net.Listen("tcp", net.JoinHostPort(s.bind, strconv.Itoa(int(port))))
			if err != nil {
				errs = append(errs, fmt.Errorf("health check node port %d of %s: %w", port, w.name, err))
				continue
			}
			cur = &svcServer{ln: ln}
			cur.srv = &http.Server{Handler: cur, ReadHeaderTimeout: 10 * time.Second}
			go func() {
				if err := cur.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.log.Warn("health check node port server stopped", zap.Int32("port", port), zap.Error(err))
				}
			}()
			s.servers[port] = cur
		}
		cur.mu.Lock()
		cur.name, cur.locals = w.name, w.locals
		cur.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Status is what one health check node port server answers.
type Status struct {
	Service        types.NamespacedName
	LocalEndpoints int
}

// Statuses lists the open servers by port, for tests and debugging.
func (s *ServiceServers) Statuses() map[int32]Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]Status, len(s.servers))
	for port, cur := range s.servers {
		cur.mu.Lock()
		out[port] = Status{Service: cur.name, LocalEndpoints: cur.locals}
		cur.mu.Unlock()
	}
	return out
}

// Close stops every server.
func (s *ServiceServers) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, cur := range s.servers {
		cur.close()
		delete(s.servers, p)
	}
}

func (h *svcServer) close() {
	_ = h.srv.Close()
	_ = h.ln.Close()
}

func (h *svcServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	name, n := h.name, h.locals
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if n == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	// Same body as kube-proxy's.
	_ = json.NewEncoder(w).Encode(map[string]any{
		"service":             map[string]string{"namespace": name.Namespace, "name": name.Name},
		"localEndpoints":      n,
		"serviceProxyHealthy": true,
	})
}
