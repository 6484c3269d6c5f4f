package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/images"
)

// Needs are the artifacts a cluster runs.
var Needs = append([]string{"kubernetes", "etcd", "containerd", "runc", "cni"}, images.Needs...)

// UpResult is what Up prints.
type UpResult struct {
	Kubeconfig string
	Demo       *DemoResult
	Timings    []Timing
}

// Timing is how long one phase of Up took.
type Timing struct {
	Phase    string
	Duration time.Duration
}

// Up starts a cluster as opts choose, replacing any cluster this checkout
// left behind. On failure it tears down what it started unless keep is set
// (the logs stay either way).
func Up(ctx context.Context, log *zap.Logger, opts Options, keep bool) (res *UpResult, err error) {
	if err := opts.CheckOurs(nil); err != nil {
		return nil, err
	}
	l := NewLayout(opts.RepoRoot)
	res = &UpResult{Kubeconfig: l.Kubeconfig("admin")}
	phase := time.Now()
	mark := func(name string) {
		res.Timings = append(res.Timings, Timing{name, time.Since(phase).Round(10 * time.Millisecond)})
		log.Info("phase done", zap.String("phase", name), zap.Duration("took", time.Since(phase).Round(10*time.Millisecond)))
		phase = time.Now()
	}
	if err := Down(ctx, log, l, RealHost{}, 20*time.Second); err != nil {
		return nil, fmt.Errorf("cleaning up the previous cluster: %w", err)
	}
	if err := WaitPortsFree(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	mark("clean previous")

	art, err := artifacts.Ensure(ctx, log, Needs...)
	if err != nil {
		return nil, err
	}
	archives, err := images.Ensure(ctx, log, art)
	if err != nil {
		return nil, err
	}
	mark("artifacts")

	host, err := HostFacts()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	st := &State{path: l.State(), Kubelet: opts.Kubelet, Runtime: opts.Runtime, Proxy: opts.Proxy}
	if err := st.Update(func(*State) {}); err != nil {
		return nil, err
	}
	c := &Cluster{Log: log, Layout: l, Host: host, Opts: opts, State: st, Bins: Binaries{
		Etcd: art.Bin("etcd"), APIServer: art.Bin("kube-apiserver"), ControllerManager: art.Bin("kube-controller-manager"),
		Scheduler: art.Bin("kube-scheduler"), Kubelet: art.Bin("kubelet"), KubeProxy: art.Bin("kube-proxy"),
		Containerd: art.Bin("containerd"), Runc: art.Bin("runc"), CNIBinDir: art.CNIBinDir,
		OurKubelet:     filepath.Join(opts.RepoRoot, "_output", "bin", "kubelet"),
		OurRuntimeShim: filepath.Join(opts.RepoRoot, "_output", "bin", "runtime-shim"),
		OurProxy:       filepath.Join(opts.RepoRoot, "_output", "bin", "proxy"),
	}}
	defer func() {
		if err == nil || keep {
			return
		}
		log.Error("up failed; tearing down (logs stay in "+l.Logs()+")", zap.Error(err))
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if derr := Down(dctx, log, l, RealHost{}, 20*time.Second); derr != nil {
			log.Error("teardown after failure", zap.Error(derr))
		}
	}()

	if err := c.PrepareHost(ctx); err != nil {
		return res, err
	}
	mode := opts.ProxyMode
	if mode == "" {
		mode = "iptables"
		if opts.Proxy == Ours {
			mode = "nftables"
		}
	}
	if err := c.WriteFiles(mode); err != nil {
		return res, err
	}
	mark("host and files")

	if err := c.StartRegistry(ctx, archives); err != nil {
		return res, err
	}
	mark("registry")
	if err := c.StartControlPlane(ctx); err != nil {
		return res, err
	}
	mark("control plane")
	if err := c.StartRuntime(ctx); err != nil {
		return res, err
	}
	mark("runtime")
	if err := c.StartNode(ctx, mode); err != nil {
		return res, err
	}
	mark("node")
	if err := c.DeployCoreDNS(ctx, images.CoreDNS); err != nil {
		return res, err
	}
	mark("coredns")
	if !opts.SkipDemo {
		if res.Demo, err = c.RunDemo(ctx, images.Agnhost); err != nil {
			return res, err
		}
		mark("demo")
	}
	return res, nil
}

// StartRegistry runs this program's serve-registry command detached, so
// the mirror outlives `up`, and waits until every image is pushed.
func (c *Cluster) StartRegistry(ctx context.Context, archives []string) error {
	self := c.Opts.RegistryCommand
	if self == "" {
		return fmt.Errorf("registry: %w: no RegistryCommand", ErrInvalidOption)
	}
	if err := WriteRegistryHosts(c.Layout.RegistryHostsDir(), RegistryAddr); err != nil {
		return err
	}
	args := append([]string{"serve-registry", "--addr", RegistryAddr}, archives...)
	return c.start(ctx, Process{Name: "registry", Path: self, Args: args, Health: "http://" + RegistryAddr + images.ReadyPath}, 5*time.Minute)
}
