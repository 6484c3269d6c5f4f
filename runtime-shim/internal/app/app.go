// Package app parses runtime-shim's flags and runs it; Main is the only place that exits.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/config"
	"github.com/nodesuite/nodesuite/runtime-shim/internal/criserver"
	"github.com/nodesuite/nodesuite/runtime-shim/internal/network"
	sharedapp "github.com/nodesuite/nodesuite/shared/app"
	"github.com/nodesuite/nodesuite/shared/daemon"
	"github.com/nodesuite/nodesuite/shared/logging"
	"github.com/nodesuite/nodesuite/shared/ops"
	"github.com/nodesuite/nodesuite/shared/version"
)

const name = "runtime-shim"

// Main runs runtime-shim with the process's arguments and exits.
func Main() { sharedapp.Main(name, Run) }

// Run parses args, serves the ops endpoints and the CRI socket, and runs
// until ctx is cancelled.
func Run(ctx context.Context, streams sharedapp.Streams, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	logOpts := logging.NewOptions()
	logOpts.AddFlags(fs)
	var opsOpts ops.Options
	opsOpts.AddFlags(fs, "ops-bind-address", "127.0.0.1:10259")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "How long a graceful shutdown may take after SIGTERM.")
	cfgFlags := config.AddFlags(fs)
	if err := sharedapp.ParseFlags(fs, streams, args, version.Get().String()); err != nil {
		return err
	}
	if err := logOpts.Validate(); err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	cfg, err := cfgFlags.Resolve()
	if err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	log, flush, err := logOpts.New(streams.Err, true)
	if err != nil {
		return err
	}
	defer flush()
	log.Info("starting", zap.String("version", version.Get().String()), zap.String("socket", cfg.Socket),
		zap.String("containerd", cfg.ContainerdAddress))

	for _, d := range []string{cfg.RootDir, cfg.StateDir, filepath.Dir(cfg.Socket)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	client, err := containerd.New(cfg.ContainerdAddress, containerd.WithDefaultNamespace(cfg.ContainerdNamespace))
	if err != nil {
		return fmt.Errorf("containerd client: %w", err)
	}
	defer client.Close()
	cni := &network.CNI{ConfDir: cfg.CNIConfDir, BinDirs: cfg.CNIBinDirs, CacheDir: filepath.Join(cfg.StateDir, "cni-cache")}
	svc, err := criserver.New(cfg, client, cni, criserver.OSHost{}, log)
	if err != nil {
		return err
	}

	var recovered atomic.Bool
	srv := ops.New(log, opsOpts)
	srv.AddReadyz(ops.Check{Name: "recovered", Func: func(*http.Request) error {
		if !recovered.Load() {
			return errors.New("state not yet recovered from containerd")
		}
		return nil
	}})
	return daemon.Serve(ctx, log, srv, *shutdown, func(ctx context.Context) error {
		// Serve only after the index is rebuilt, so no request sees a partial view.
		for {
			err := svc.Recover(ctx)
			if err == nil {
				break
			}
			log.Warn("waiting for containerd", zap.Error(err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		svc.DetectFeatures(ctx)
		recovered.Store(true)
		go svc.WatchOOM(ctx)
		return serve(ctx, log, cfg, svc)
	})
}

func serve(ctx context.Context, log *zap.Logger, cfg config.Config, svc *criserver.Service) error {
	stream, err := svc.NewStreamingServer(cfg.StreamingAddress)
	if err != nil {
		return fmt.Errorf("streaming server: %w", err)
	}
	streamErr := make(chan error, 1)
	go func() { streamErr <- stream.Start(true) }()
	defer func() { _ = stream.Stop() }()

	if err := os.Remove(cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	l, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Socket, err)
	}
	g := criserver.NewGRPCServer(svc, log)
	grpcErr := make(chan error, 1)
	go func() { grpcErr <- g.Serve(l) }()
	log.Info("serving CRI", zap.String("socket", cfg.Socket), zap.String("streaming", cfg.StreamingAddress))
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { g.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			g.Stop() // long streams (events, attach) would hold GracefulStop forever
		}
		return nil
	case err := <-grpcErr:
		return fmt.Errorf("CRI server: %w", err)
	case err := <-streamErr:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("streaming server: %w", err)
	}
}
