// Package app parses runtime-shim's flags and runs it; Main is the only place that exits.
package app

import (
	"context"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	sharedapp "github.com/nodesuite/nodesuite/shared/app"
	"github.com/nodesuite/nodesuite/shared/daemon"
	"github.com/nodesuite/nodesuite/shared/logging"
	"github.com/nodesuite/nodesuite/shared/ops"
	"github.com/nodesuite/nodesuite/shared/version"
)

const name = "runtime-shim"

// Main runs runtime-shim with the process's arguments and exits.
func Main() { sharedapp.Main(name, Run) }

// Run parses args, serves the ops endpoints and runs until ctx is cancelled.
func Run(ctx context.Context, streams sharedapp.Streams, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	logOpts := logging.NewOptions()
	logOpts.AddFlags(fs)
	var opsOpts ops.Options
	opsOpts.AddFlags(fs, "ops-bind-address", "127.0.0.1:10259")
	shutdown := fs.Duration("shutdown-timeout", 30*time.Second, "How long a graceful shutdown may take after SIGTERM.")
	if err := sharedapp.ParseFlags(fs, streams, args, version.Get().String()); err != nil {
		return err
	}
	if err := logOpts.Validate(); err != nil {
		return &sharedapp.UsageError{Err: err}
	}
	log, flush, err := logOpts.New(streams.Err, true)
	if err != nil {
		return err
	}
	defer flush()
	log.Info("starting", zap.String("version", version.Get().String()))
	srv := ops.New(log, opsOpts)
	return daemon.Serve(ctx, log, srv, *shutdown, func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
}
