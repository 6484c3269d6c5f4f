package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/images"
	"github.com/nodesuite/nodesuite/e2e/harness/runtime"
)

// stackFlags are the flags of every command that starts a runtime stack.
type stackFlags struct {
	runtime, shim, dir, bridge, subnet string
}

func (f *stackFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&f.runtime, "runtime", "containerd", "CRI server: containerd (its own CRI) or ours (runtime-shim)")
	fs.StringVar(&f.shim, "shim", "_output/bin/runtime-shim", "runtime-shim binary, for --runtime ours")
	fs.StringVar(&f.dir, "dir", "", "stack directory (default /tmp/artifacts-<runtime>)")
	fs.StringVar(&f.bridge, "bridge", "", "private bridge name (default nsart-<runtime>)")
	fs.StringVar(&f.subnet, "subnet", "", "private Pod subnet (default 10.251.1.0/24 for containerd, 10.251.2.0/24 for ours)")
}

func (f *stackFlags) options(a *artifacts.Artifacts, mirror string) (runtime.Options, error) {
	rt := runtime.Runtime(f.runtime)
	o := runtime.Options{Dir: f.dir, Runtime: rt, Artifacts: a, Mirror: mirror, Bridge: f.bridge, Subnet: f.subnet}
	n := map[runtime.Runtime]string{runtime.Containerd: "1", runtime.Ours: "2"}[rt]
	if n == "" {
		return o, fmt.Errorf("--runtime %q: want containerd or ours", f.runtime)
	}
	if o.Dir == "" {
		o.Dir = "/tmp/artifacts-" + f.runtime
	}
	if o.Bridge == "" {
		o.Bridge = "nsart-" + f.runtime
		if len(o.Bridge) > 15 {
			o.Bridge = o.Bridge[:15]
		}
	}
	if o.Subnet == "" {
		o.Subnet = "10.251." + n + ".0/24"
	}
	if rt == runtime.Ours {
		shim, err := filepath.Abs(f.shim)
		if err != nil {
			return o, err
		}
		if _, err := os.Stat(shim); err != nil {
			return o, fmt.Errorf("--runtime ours needs the runtime-shim binary (make build): %w", err)
		}
		o.ShimBinary = shim
	}
	return o, nil
}

// critestNeeds are the binaries a critest run uses.
var critestNeeds = []string{"runc", "containerd", "cni", "crictl", "critest", "testimages"}

// withStack builds what is missing, starts the registry and a stack, runs
// fn, and stops everything however fn ends.
func withStack(ctx context.Context, log *zap.Logger, f stackFlags, needs, imgs []string, fn func(*artifacts.Artifacts, *runtime.Stack) error) (err error) {
	a, err := artifacts.Ensure(ctx, log, needs...)
	if err != nil {
		return err
	}
	opts, err := f.options(a, "")
	if err != nil {
		return err
	}
	reg, err := images.StartRegistryFor(ctx, log, a, "127.0.0.1:0", imgs...)
	if err != nil {
		return err
	}
	defer func() {
		if serr := reg.Stop(context.Background()); serr != nil && err == nil {
			err = serr
		}
	}()
	opts.Mirror = reg.Endpoint()
	stack, err := runtime.Start(ctx, log, opts)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if serr := stack.Stop(sctx); serr != nil && err == nil {
			err = serr
		}
	}()
	return fn(a, stack)
}

// runCritest runs critest against one stack and prints its summary.
func runCritest(ctx context.Context, log *zap.Logger, args []string) error {
	fs := flag.NewFlagSet("critest", flag.ContinueOnError)
	var f stackFlags
	f.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	res, err := critestOnce(ctx, log, f, fs.Args())
	if err != nil {
		return err
	}
	printSummary(f.runtime, res)
	if res.Failed > 0 {
		return fmt.Errorf("critest against %s: %d failed", f.runtime, res.Failed)
	}
	return nil
}

func critestOnce(ctx context.Context, log *zap.Logger, f stackFlags, extra []string) (runtime.CritestResult, error) {
	var res runtime.CritestResult
	err := withStack(ctx, log, f, critestNeeds, images.CritestImages, func(a *artifacts.Artifacts, s *runtime.Stack) error {
		logPath := filepath.Join(s.Layout.Logs(), "critest.log")
		log.Info("running critest", zap.String("runtime", f.runtime), zap.String("socket", s.CRISocket), zap.String("log", logPath))
		start := time.Now()
		var err error
		res, err = runtime.RunCritest(ctx, a.Bin("critest"), s.CRISocket, logPath, os.Stdout, extra...)
		log.Info("critest done", zap.String("runtime", f.runtime), zap.Duration("took", time.Since(start).Round(time.Second)))
		return err
	})
	return res, err
}

func printSummary(rt string, res runtime.CritestResult) {
	fmt.Printf("\n==== critest summary (RUNTIME=%s)\n%s\n", rt, res.Summary)
	fmt.Printf("RUNTIME=%s: %d passed / %d failed / %d skipped\n", rt, res.Passed, res.Failed, res.Skipped)
}

// runCritestCompare runs critest against containerd's CRI and ours and
// prints the specs containerd passes that ours fails.
func runCritestCompare(ctx context.Context, log *zap.Logger, args []string) error {
	fs := flag.NewFlagSet("critest-compare", flag.ContinueOnError)
	shim := fs.String("shim", "_output/bin/runtime-shim", "runtime-shim binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	results := map[string]runtime.CritestResult{}
	var errs []error
	for _, rt := range []string{"containerd", "ours"} {
		res, err := critestOnce(ctx, log, stackFlags{runtime: rt, shim: *shim}, fs.Args())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rt, err))
			continue
		}
		results[rt] = res
	}
	for _, rt := range []string{"containerd", "ours"} {
		if res, ok := results[rt]; ok {
			printSummary(rt, res)
		}
	}
	base, okb := results["containerd"]
	ours, oko := results["ours"]
	if okb && oko {
		reg := runtime.Regressions(base, ours)
		fmt.Printf("\n==== specs containerd passes and ours fails: %d\n", len(reg))
		if len(reg) > 0 {
			fmt.Println("  " + strings.Join(reg, "\n  "))
		}
		// The gate: ours passes at least as many and fails none of base's.
		errs = append(errs, runtime.CompareVerdict(base, ours))
	}
	return errors.Join(errs...)
}

// runStack starts a stack and keeps it up until interrupted, printing its
// CRI socket (for crictl or a kubelet).
func runStack(ctx context.Context, log *zap.Logger, args []string) error {
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	var f stackFlags
	f.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Every image, for trying the suite's images by hand with crictl.
	needs := append(append([]string{}, critestNeeds...), images.Needs...)
	return withStack(ctx, log, f, needs, nil, func(_ *artifacts.Artifacts, s *runtime.Stack) error {
		fmt.Println("CRI socket:", s.CRISocket)
		<-ctx.Done()
		return nil
	})
}
