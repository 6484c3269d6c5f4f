// Command umlhost runs a command in a user-mode-linux guest that reaches a
// real API server on this host over a tap device (package umlhost), then
// removes the tap and the control plane. make test-ipvs runs the proxy's
// real-kernel tests with it.
//
//	umlhost [-dir DIR] [-mem 768M] [-run-sh proxy/test/uml/run.sh] -- COMMAND [ARGS...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/bench/proxy-ipvs/umlhost"
)

func main() {
	dir := flag.String("dir", "", "work directory (default: a new /tmp/proxy-ipvs-host-*)")
	mem := flag.String("mem", "768M", "guest memory")
	runSh := flag.String("run-sh", "proxy/test/uml/run.sh", "the UML runner")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: umlhost [flags] -- COMMAND [ARGS...]")
		os.Exit(2)
	}
	os.Exit(run(*dir, *mem, *runSh, flag.Args()))
}

func run(dir, mem, runSh string, args []string) int {
	log, _ := zap.NewDevelopment()
	defer func() { _ = log.Sync() }()
	if dir == "" {
		d, err := os.MkdirTemp("", "proxy-ipvs-host-")
		if err != nil {
			log.Error("work dir", zap.Error(err))
			return 1
		}
		dir = d
		defer os.RemoveAll(d)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := umlhost.Start(ctx, dir, log)
	if err != nil {
		log.Error("host side", zap.Error(err))
		return 1
	}
	defer env.Close()
	cmd := env.Command(ctx, runSh, mem, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		log.Error("guest", zap.Error(err))
		return 1
	}
	return 0
}
