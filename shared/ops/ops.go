// Package ops is the operations HTTP server every daemon runs: /healthz,
// /livez and /readyz built from named checks, /metrics for Prometheus, and
// /debug/pprof when the operator asks for it.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Check is one named health check; a nil error means healthy.
type Check struct {
	Name string
	Func func(*http.Request) error
}

// Ping is the check every endpoint has: the server answers.
var Ping = Check{Name: "ping", Func: func(*http.Request) error { return nil }}

// Options configure the server.
type Options struct {
	// Address to listen on, host:port; ":0" picks a free port.
	Address string
	// EnablePprof mounts /debug/pprof/.
	EnablePprof bool
	// Registry holds the daemon's metrics; nil gets a fresh registry with the
	// Go and process collectors.
	Registry *prometheus.Registry
}

// Server serves the operations endpoints.
type Server struct {
	opts     Options
	log      *zap.Logger
	mux      *http.ServeMux
	mu       sync.RWMutex
	checks   map[string][]Check // endpoint ("healthz", "livez", "readyz") -> checks
	ln       net.Listener
	srv      *http.Server
	Registry *prometheus.Registry
}

// New builds a server; Start makes it listen.
func New(log *zap.Logger, opts Options) *Server {
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Server{opts: opts, log: log, mux: http.NewServeMux(), Registry: reg,
		checks: map[string][]Check{"healthz": {Ping}, "livez": {Ping}, "readyz": {Ping}}}
	for _, ep := range []string{"healthz", "livez", "readyz"} {
		ep := ep
		s.mux.HandleFunc("/"+ep, func(w http.ResponseWriter, r *http.Request) { s.serveChecks(w, r, ep, "") })
		s.mux.HandleFunc("/"+ep+"/", func(w http.ResponseWriter, r *http.Request) {
			s.serveChecks(w, r, ep, strings.TrimPrefix(r.URL.Path, "/"+ep+"/"))
		})
	}
	s.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if opts.EnablePprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s
}

// AddHealthz adds checks to /healthz, /livez and /readyz: a failing liveness
// check is also a reason not to be ready, as in the upstream components.
func (s *Server) AddHealthz(cs ...Check) { s.add([]string{"healthz", "livez", "readyz"}, cs) }

// AddLivez adds checks to /livez (and /healthz, which is the union upstream).
func (s *Server) AddLivez(cs ...Check) { s.add([]string{"healthz", "livez"}, cs) }

// AddReadyz adds checks to /readyz only.
func (s *Server) AddReadyz(cs ...Check) { s.add([]string{"readyz"}, cs) }

func (s *Server) add(eps []string, cs []Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range eps {
		s.checks[ep] = append(s.checks[ep], cs...)
	}
}

// Handle mounts an extra handler (e.g. a daemon's own debug page).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler returns the whole mux, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) serveChecks(w http.ResponseWriter, r *http.Request, ep, only string) {
	s.mu.RLock()
	cs := append([]Check(nil), s.checks[ep]...)
	s.mu.RUnlock()
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	excluded := map[string]bool{}
	for _, e := range r.URL.Query()["exclude"] {
		excluded[e] = true
	}
	var b strings.Builder
	failed := false
	found := only == ""
	for _, c := range cs {
		if excluded[c.Name] || (only != "" && c.Name != only) {
			continue
		}
		found = true
		if err := c.Func(r); err != nil {
			failed = true
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.Name, err)
			s.log.Debug("health check failed", zap.String("endpoint", ep), zap.String("check", c.Name), zap.Error(err))
		} else {
			fmt.Fprintf(&b, "[+]%s ok\n", c.Name)
		}
	}
	if !found {
		http.Error(w, fmt.Sprintf("no check named %q under /%s", only, ep), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if failed {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "%s%s check failed\n", b.String(), ep)
		return
	}
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		fmt.Fprintf(w, "%s%s check passed\n", b.String(), ep)
		return
	}
	fmt.Fprint(w, "ok")
}

// Start listens and serves in the background; the error is about listening.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("ops server: listen on %q: %w", s.opts.Address, err)
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("ops server stopped", zap.Error(err))
		}
	}()
	s.log.Info("ops server listening", zap.String("address", ln.Addr().String()), zap.Bool("pprof", s.opts.EnablePprof))
	return nil
}

// Addr is the address the server listens on, after Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Shutdown stops accepting and waits for requests in flight until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

// AddFlags registers the ops server flags under the names the caller gives,
// so each daemon can keep its upstream twin's spelling (kubelet's
// --healthz-bind-address, kube-proxy's --metrics-bind-address, ...).
func (o *Options) AddFlags(fs interface {
	StringVar(p *string, name string, value string, usage string)
	BoolVar(p *bool, name string, value bool, usage string)
}, addressFlag, defaultAddress string) {
	fs.StringVar(&o.Address, addressFlag, defaultAddress, "Address (host:port) of the ops server: /healthz, /livez, /readyz, /metrics.")
	fs.BoolVar(&o.EnablePprof, "profiling", false, "Serve /debug/pprof/ on the ops server.")
}
