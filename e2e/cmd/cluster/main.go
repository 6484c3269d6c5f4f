// Command cluster brings the local single-node cluster up and down:
//
//	cluster up [--kubelet ours|upstream] [--runtime ours|containerd] [--proxy ours|upstream]
//	cluster down
//	cluster swap-kubelet --to ours|upstream
//
// The logic is in package harness/cluster.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
	"github.com/nodesuite/nodesuite/shared/logging"
	"github.com/nodesuite/nodesuite/shared/signals"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: cluster up|down|swap-kubelet|serve-registry [flags]")
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := pflag.NewFlagSet("cluster "+cmd, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	logOpts := logging.NewOptions()
	logOpts.AddFlags(fs)
	repo := fs.String("repo", "", "The checkout (default: the directory holding go.work above the working directory).")
	kubelet := fs.String("kubelet", "ours", "Kubelet: ours or upstream.")
	runtime := fs.String("runtime", "ours", "Runtime: ours (runtime-shim over containerd) or containerd.")
	proxy := fs.String("proxy", "ours", "Proxy: ours or upstream.")
	proxyMode := fs.String("proxy-mode", "", "Proxy mode (default iptables for kube-proxy, nftables for ours).")
	keep := fs.Bool("keep-on-failure", false, "Leave a failed cluster running for debugging (make down removes it).")
	noDemo := fs.Bool("no-demo", false, "Do not deploy the demo workload.")
	addr := fs.String("addr", cluster.RegistryAddr, "serve-registry: listen address.")
	to := fs.String("to", "", "swap-kubelet: the kubelet to run next, ours or upstream (the same as now restarts it).")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := logOpts.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log, flush, err := logOpts.New(stderr, true)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer flush()
	ctx, stop := signals.Context(context.Background())
	defer stop()
	if *repo == "" && cmd != "serve-registry" {
		if *repo, err = artifacts.FindRepo(); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	switch cmd {
	case "up":
		opts := cluster.Options{RepoRoot: *repo, CacheDir: artifacts.CacheRoot(), ProxyMode: *proxyMode, SkipDemo: *noDemo}
		var errs []error
		var e error
		opts.Kubelet, e = cluster.ParseChoice("KUBELET", *kubelet)
		errs = append(errs, e)
		opts.Runtime, e = cluster.ParseRuntime(*runtime)
		errs = append(errs, e)
		opts.Proxy, e = cluster.ParseChoice("PROXY", *proxy)
		errs = append(errs, e)
		if err := errors.Join(errs...); err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		// The image mirror is this program again (serve-registry), detached.
		if opts.RegistryCommand, err = os.Executable(); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		start := time.Now()
		res, err := cluster.Up(ctx, log, opts, *keep)
		if err != nil {
			fmt.Fprintf(stderr, "\nmake up failed: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "\ncluster up in %s (kubelet=%s runtime=%s proxy=%s)\n", time.Since(start).Round(time.Second), opts.Kubelet, *runtime, opts.Proxy)
		for _, t := range res.Timings {
			fmt.Fprintf(stdout, "  %-16s %s\n", t.Phase, t.Duration)
		}
		if d := res.Demo; d != nil {
			fmt.Fprintf(stdout, "demo through the ClusterIP Service: GET %s -> %s\n", d.ClusterIPURL, d.ClusterIPAnswer)
			fmt.Fprintf(stdout, "demo through the NodePort Service:  GET %s -> %s\n", d.NodePortURL, d.NodePortAnswer)
		}
		fmt.Fprintf(stdout, "kubeconfig: %s\n", res.Kubeconfig)
		return 0
	case "down":
		l := cluster.NewLayout(*repo)
		if err := cluster.Down(ctx, log, l, cluster.RealHost{}, 20*time.Second); err != nil {
			fmt.Fprintf(stderr, "make down: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, "cluster down")
		return 0
	case "swap-kubelet":
		choice, err := cluster.ParseChoice("--to", *to)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		start := time.Now()
		sw, err := cluster.SwapKubelet(ctx, log, cluster.NewLayout(*repo), *repo, artifacts.CacheRoot(), choice, 30*time.Second)
		if err != nil {
			fmt.Fprintf(stderr, "swap-kubelet: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "kubelet %s (pid %d) replaced by %s in %s\n", sw.Old.Path, sw.Old.PID, sw.New.Path, time.Since(start).Round(time.Millisecond))
		return 0
	case "serve-registry":
		if err := cluster.ServeRegistry(ctx, log, *addr, fs.Args()); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "unknown command %q: want up, down, swap-kubelet or serve-registry\n", cmd)
	return 2
}
