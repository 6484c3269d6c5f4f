// Command cribench measures CRI operations on runtime-shim and on
// containerd's own CRI in one run and prints the ratios (make bench).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/cribench"
)

func main() {
	var o cribench.Options
	flag.StringVar(&o.Ours, "ours", "", "runtime-shim's CRI socket")
	flag.StringVar(&o.Upstream, "upstream", "", "containerd's CRI socket")
	flag.StringVar(&o.Image, "image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image")
	flag.IntVar(&o.Rounds, "rounds", 20, "measured rounds per runtime")
	flag.IntVar(&o.Background, "background", 10, "extra running Pods while listing")
	flag.Parse()
	if o.Ours == "" || o.Upstream == "" {
		fmt.Fprintln(os.Stderr, "cribench: --ours and --upstream are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := cribench.Run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cribench:", err)
		os.Exit(1)
	}
	res.Report(os.Stdout)
}
