package nftables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
)

// healthServers serves each LoadBalancer Service's healthCheckNodePort (eTP
// Local) with kube-proxy's response: 200 while the node has local endpoints
// for the Service, 503 otherwise, so the load balancer only sends to nodes
// that have some.
type healthServers struct {
	log  *zap.Logger
	bind string

	mu      sync.Mutex
	servers map[int32]*healthServer
}

type healthServer struct {
	name      types.NamespacedName
	localEPs  int
	listener  net.Listener
	http      *http.Server
	serveDone chan struct{}
}

// healthTarget is what one health check node port reports.
type healthTarget struct {
	name     types.NamespacedName
	localEPs int
}

func newHealthServers(log *zap.Logger, bind string) *healthServers {
	return &healthServers{log: log, bind: bind, servers: map[int32]*healthServer{}}
}

type healthResponse struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *healthServers) handler(port int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		s := h.servers[port]
		var resp healthResponse
		if s != nil {
			resp.Service.Namespace, resp.Service.Name = s.name.Namespace, s.name.Name
			resp.LocalEndpoints = s.localEPs
		}
		h.mu.Unlock()
		resp.ServiceProxyHealthy = true
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(resp.LocalEndpoints))
		if resp.LocalEndpoints == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		_ = json.NewEncoder(w).Encode(resp)
	})
}

// sync makes the set of listening ports exactly targets. A port that cannot
// be opened is reported and retried on the next sync; it does not stop the
// others.
func (h *healthServers) sync(targets map[int32]healthTarget) error {
	h.mu.Lock()
	var stop []*healthServer
	for port, s := range h.servers {
		if _, ok := targets[port]; !ok {
			stop = append(stop, s)
			delete(h.servers, port)
		}
	}
	var errs []error
	for port, t := range targets {
		if s, ok := h.servers[port]; ok {
			s.name, s.localEPs = t.name, t.localEPs
			continue
		}
		addr := net.JoinHostPort(h.bind, strconv.Itoa(int(port)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("health check node port %s for %s: %w", addr, t.name, err))
			continue
		}
		s := &healthServer{name: t.name, localEPs: t.localEPs, listener: ln, serveDone: make(chan struct{}),
			http: &http.Server{Handler: h.handler(port), ReadHeaderTimeout: 5 * time.Second}}
		h.servers[port] = s
		go func() {
			defer close(s.serveDone)
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Warn("health check server stopped", zap.String("address", addr), zap.Error(err))
			}
		}()
	}
	h.mu.Unlock()
	for _, s := range stop {
		s.close()
	}
	return errors.Join(errs...)
}

func (s *healthServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	<-s.serveDone
}

func (h *healthServers) close() {
	_ = h.sync(nil)
}
