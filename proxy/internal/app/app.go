// Package app parses proxy's flags and runs it; Main is the only place that exits.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodesuite/nodesuite/proxy/internal/config"
	"github.com/nodesuite/nodesuite/proxy/internal/health"
	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
	"github.com/nodesuite/nodesuite/proxy/internal/syncer"
	sharedapp "github.com/nodesuite/nodesuite/shared/app"
	"github.com/nodesuite/nodesuite/shared/daemon"
	"github.com/nodesuite/nodesuite/shared/logging"
	"github.com/nodesuite/nodesuite/shared/ops"
	"github.com/nodesuite/nodesuite/shared/version"
)

const name = "proxy"

// Main runs proxy with the process's arguments and exits.
func Main() { sharedapp.Main(name, Run) }

// Run parses args, serves the ops endpoints and runs until ctx is cancelled.
func Run(ctx context.Context, streams sharedapp.Streams, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	logOpts := logging.NewOptions()
	logOpts.AddFlags(fs)
	flags := config.AddFlags(fs)
	profiling := fs.Bool("profiling", false, "Serve /debug/pprof/ on the metrics server.")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "How long a graceful shutdown may take after SIGTERM.")
	if err := sharedapp.ParseFlags(fs, streams, args, version.Get().String()); err != nil {
		return err
	}
	if err := logOpts.Validate(); err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	cfg, err := flags.Resolve()
	if err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	log, flush, err := logOpts.New(streams.Err, true)
	if err != nil {
		return err
	}
	defer flush()
	log.Info("starting", zap.String("version", version.Get().String()))

	families := families(cfg)
	mode := cfg.Mode
	if mode == "" {
		mode = config.ModeNFTables
		if ipvsAvailable() {
			mode = config.ModeIPVS
		}
		log.Info("proxy mode not set: chose by kernel support", zap.String("mode", mode), zap.Bool("kernelHasIPVS", mode == config.ModeIPVS))
	}
	if cfg.Cleanup {
		return cleanup(log, mode, families)
	}
	applyConntrack(log, cfg)

	hostname := cfg.HostnameOverride
	if hostname == "" {
		if hostname, err = os.Hostname(); err != nil {
			return err
		}
	}
	hostname = strings.ToLower(strings.TrimSpace(hostname))

	usePlainList()
	restCfg, err := clientcmd.BuildConfigFromFlags(cfg.Master, cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("API server client config: %w", err)
	}
	restCfg.QPS, restCfg.Burst = cfg.ClientQPS, int(cfg.ClientBurst)
	// kube-proxy's default is protobuf too; JSON takes seconds longer to
	// list 10,000 Services and EndpointSlices at start.
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	if cfg.ContentType != "" {
		restCfg.ContentType = cfg.ContentType
	}
	restCfg.UserAgent = "nodesuite-proxy/" + version.Get().String()
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("API server client: %w", err)
	}

	plane, closePlane, err := newDataPlane(log, mode, cfg, families)
	if err != nil {
		return err
	}
	defer closePlane()

	srv := ops.New(log, ops.Options{Address: cfg.MetricsBindAddress, EnablePprof: *profiling || cfg.EnableProfiling})
	var s *syncer.Syncer
	hs := health.New(2*cfg.SyncPeriod, nil, func() *v1.Node {
		if s == nil {
			return nil
		}
		return s.Node()
	})
	srv.AddHealthz(ops.Check{Name: "proxy-sync", Func: hs.Check})
	s, err = syncer.New(client, plane, syncer.Options{
		NodeName: hostname, Families: families, NodePortAddresses: cfg.NodePortAddresses, HostAddresses: hostAddresses,
		MinSyncPeriod: cfg.MinSyncPeriod, SyncPeriod: cfg.SyncPeriod, ConfigSyncPeriod: cfg.ConfigSyncPeriod,
		Registry: srv.Registry, Health: hs, Log: log.Named("sync"),
	})
	if err != nil {
		return err
	}
	return daemon.Serve(ctx, log, srv, *shutdown, func(ctx context.Context) error {
		stopHealth, err := serveHealthz(log, cfg.HealthzBindAddress, hs.Handler())
		if err != nil {
			return err
		}
		defer stopHealth()
		return s.Run(ctx)
	})
}

// families: those of the cluster CIDRs when given, else IPv4 plus IPv6
// where the kernel has it.
func families(cfg *config.Config) []v1.IPFamily {
	fs := sets.New[v1.IPFamily]()
	for _, c := range cfg.ClusterCIDRs {
		if c.Addr().Is4() {
			fs.Insert(v1.IPv4Protocol)
		} else {
			fs.Insert(v1.IPv6Protocol)
		}
	}
	if fs.Len() == 0 {
		fs.Insert(v1.IPv4Protocol)
		if _, err := os.Stat("/proc/net/if_inet6"); err == nil {
			fs.Insert(v1.IPv6Protocol)
		}
	}
	out := []v1.IPFamily{}
	for _, f := range []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol} {
		if fs.Has(f) {
			out = append(out, f)
		}
	}
	return out
}

// serveHealthz runs kube-proxy's health server (JSON /healthz and /livez).
func serveHealthz(log *zap.Logger, addr string, h http.Handler) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("healthz server: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("healthz server stopped", zap.Error(err))
		}
	}()
	log.Info("healthz server listening", zap.String("address", ln.Addr().String()))
	return func() { _ = srv.Close() }, nil
}

// withServiceHealth runs the health check node port servers beside a data
// plane that does not have its own.
type withServiceHealth struct {
	servicestate.DataPlane
	hs  *health.ServiceServers
	log *zap.Logger
}

func (w withServiceHealth) Sync(ctx context.Context, st *servicestate.State, changed sets.Set[servicestate.Key], full bool) error {
	err := w.DataPlane.Sync(ctx, st, changed, full)
	if herr := w.hs.Sync(st, changed, full); herr != nil {
		w.log.Warn("health check node ports", zap.Error(herr))
	}
	return err
}

// withServiceHealthReconciler is withServiceHealth for a plane that
// reconciles in the background (IPVS): embedding the DataPlane interface
// alone would hide Reconcile from the syncer.
type withServiceHealthReconciler struct {
	withServiceHealth
	r syncer.BackgroundReconciler
}

func (w withServiceHealthReconciler) Reconcile(ctx context.Context, pace servicestate.Pacer) error {
	return w.r.Reconcile(ctx, pace)
}

// withHealth wraps p in withServiceHealth, keeping its background reconcile.
func withHealth(p servicestate.DataPlane, hs *health.ServiceServers, log *zap.Logger) servicestate.DataPlane {
	w := withServiceHealth{DataPlane: p, hs: hs, log: log}
	if r, ok := p.(syncer.BackgroundReconciler); ok {
		return withServiceHealthReconciler{withServiceHealth: w, r: r}
	}
	return w
}

// Reap passes through to the IPVS plane's draining.
func (w withServiceHealth) Reap() error {
	if r, ok := w.DataPlane.(syncer.Reaper); ok {
		return r.Reap()
	}
	return nil
}

func prefixes(ps []netip.Prefix) []netip.Prefix { return append([]netip.Prefix(nil), ps...) }
