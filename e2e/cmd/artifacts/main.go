// Command artifacts builds and serves what the harness runs:
//
//	artifacts build [names...]         upstream binaries (default: all but e2e.test)
//	artifacts images                   the local images as <cache>/images/<name>.tar
//	artifacts registry --addr A:P      serves the images on 127.0.0.1 until interrupted
//	artifacts critest --runtime R      critest against a private runtime stack
//	artifacts critest-compare          critest against containerd and ours, side by side
//	artifacts stack --runtime R        a private runtime stack until interrupted
//
// The logic is in e2e/harness/artifacts and e2e/harness/images.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
)

const usage = `usage: artifacts build [names...] | images | registry [--addr 127.0.0.1:PORT] |
  critest --runtime containerd|ours [-- critest flags] | critest-compare | stack --runtime containerd|ours`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "artifacts:", err)
		os.Exit(1)
	}
}

func newLogger() *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05")
	enc.EncodeCaller = nil
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(os.Stderr), zap.InfoLevel))
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	log := newLogger()
	defer func() { _ = log.Sync() }()
	switch args[0] {
	case "build":
		fs := flag.NewFlagSet("build", flag.ContinueOnError)
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		a, err := artifacts.Ensure(ctx, log, fs.Args()...)
		if err != nil {
			return err
		}
		fmt.Println(a.BinDir)
		return nil
	case "images":
		return runImages(ctx, log, args[1:])
	case "registry":
		return runRegistry(ctx, log, args[1:])
	case "critest":
		return runCritest(ctx, log, args[1:])
	case "critest-compare":
		return runCritestCompare(ctx, log, args[1:])
	case "stack":
		return runStack(ctx, log, args[1:])
	}
	return fmt.Errorf("unknown command %q; %s", args[0], usage)
}
