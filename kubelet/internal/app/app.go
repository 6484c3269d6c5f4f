// Package app parses kubelet's flags and runs it; Main is the only place that exits.
package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	sharedapp "github.com/nodesuite/nodesuite/shared/app"
	"github.com/nodesuite/nodesuite/shared/daemon"
	"github.com/nodesuite/nodesuite/shared/logging"
	"github.com/nodesuite/nodesuite/shared/ops"
	"github.com/nodesuite/nodesuite/shared/version"

	"github.com/nodesuite/nodesuite/kubelet/internal/config"
	"github.com/nodesuite/nodesuite/kubelet/internal/kubelet"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
)

const name = "kubelet"

// Main runs kubelet with the process's arguments and exits.
func Main() { sharedapp.Main(name, Run) }

// Run parses args, serves the ops endpoints and runs until ctx is cancelled.
func Run(ctx context.Context, streams sharedapp.Streams, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	logOpts := logging.NewOptions()
	logOpts.AddFlags(fs)
	var opsOpts ops.Options
	opsOpts.AddFlags(fs, "healthz-bind-address", "127.0.0.1:10248")
	var flags config.Flags
	flags.AddFlags(fs)
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "How long a graceful shutdown may take after SIGTERM.")
	if err := sharedapp.ParseFlags(fs, streams, args, version.Get().String()); err != nil {
		return err
	}
	if err := logOpts.Validate(); err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	var deferred []string
	kc, err := loadFile(flags.ConfigFile, &deferred)
	if err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	hostname, _ := os.Hostname()
	cfg, err := config.Build(fs, &flags, kc, hostname)
	if err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	if cfg.HealthzBindAddress != "" && !fs.Changed("healthz-bind-address") {
		opsOpts.Address = cfg.HealthzBindAddress
	}
	if cfg.FailCgroupV1 && cgroupV1() {
		return &sharedapp.UsageError{Err: errors.New("kubelet is configured to not run on a host using cgroup v1 (set failCgroupV1: false to allow it)")}
	}
	log, flush, err := logOpts.New(streams.Err, true)
	if err != nil {
		return err
	}
	defer flush()
	log.Info("starting", zap.String("version", version.Get().String()), zap.String("node", cfg.NodeName))
	if len(deferred) > 0 {
		log.Info("config fields accepted but not acted on by this kubelet yet (kubelet server: part 2)", zap.Strings("fields", deferred))
	}
	srv := ops.New(log, opsOpts)
	return daemon.Serve(ctx, log, srv, *shutdown, func(ctx context.Context) error {
		return kubelet.Run(ctx, log, cfg)
	})
}

func loadFile(path string, deferred *[]string) (_ *kubeletv1beta1.KubeletConfiguration, err error) {
	if path == "" {
		return nil, nil
	}
	kc, d, err := config.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	*deferred = d
	return kc, nil
}

func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}
