// Package controlplane starts a real etcd and kube-apiserver (optionally the
// controller-manager and scheduler) on free ports, for integration tests and
// benchmarks that need an API server but not a node. It reuses the local
// cluster's process definitions and PKI (package cluster), so what a test
// talks to is configured exactly like the cluster `make up` builds; unlike
// that cluster, any number of control planes can run at once, and their
// processes are children of the caller that die with it.
package controlplane

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
)

// Options choose what runs and where.
type Options struct {
	// Dir holds PKI, etcd data, kubeconfigs and logs. Its pki, etcd and
	// logs subdirectories are recreated: a control plane never inherits
	// another's state.
	Dir string
	// BinDir has etcd, kube-apiserver, ...; default $NODESUITE_CACHE/bin
	// (NODESUITE_CACHE defaults to /var/cache/nodesuite).
	BinDir string
	// AdvertiseIP is the address the API server advertises (it refuses
	// loopback); default the host's uplink address (cluster.HostFacts).
	AdvertiseIP net.IP
	// ExtraIPs are more addresses of this host clients will dial (e.g. a
	// tap or veth made by the test); they go into the serving certificate.
	ExtraIPs []net.IP
	// NodeName is the node the kubelet certificates are for (default: the
	// lower-case hostname).
	NodeName          string
	ControllerManager bool
	Scheduler         bool
	Log               *zap.Logger
	// ReadyTimeout bounds each process's start (default 90s).
	ReadyTimeout time.Duration
}

// ControlPlane is a running control plane.
type ControlPlane struct {
	// Server is https://<AdvertiseIP>:<port>; the API server listens on
	// every address.
	Server string
	// AdminKubeconfig is a system:masters kubeconfig.
	AdminKubeconfig string
	Dir             string
	Port            int

	layout cluster.Layout
	log    *zap.Logger
	mu     sync.Mutex
	procs  []*proc
}

var clientUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}

// ErrExited is wrapped when a process dies before it is ready.
var ErrExited = errors.New("control plane process exited")

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// Start brings up etcd and kube-apiserver (and what Options add) and waits
// until each answers its health check. On error everything started is
// stopped.
func Start(ctx context.Context, o Options) (_ *ControlPlane, err error) {
	if o.Dir == "" {
		return nil, errors.New("controlplane: Options.Dir is required")
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 90 * time.Second
	}
	if o.BinDir == "" {
		cache := os.Getenv("NODESUITE_CACHE")
		if cache == "" {
			cache = "/var/cache/nodesuite"
		}
		o.BinDir = filepath.Join(cache, "bin")
	}
	host, err := hostOf(o)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	l := cluster.Layout{Dir: dir, RunDir: filepath.Join(dir, "run"),
		Ports: cluster.Ports{API: ports[0], Etcd: ports[1], EtcdPeer: ports[2], EtcdMetrics: ports[3]}}
	for _, d := range []string{l.PKI(), l.Etcd(), l.Logs()} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("controlplane: %w", err)
		}
	}
	if err := os.MkdirAll(l.Logs(), 0o755); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	spec := cluster.ClusterPKI(host.IP, host.NodeName)
	for i := range spec.Certs {
		if spec.Certs[i].Name == "apiserver" {
			spec.Certs[i].IPs = append(spec.Certs[i].IPs, o.ExtraIPs...)
		}
	}
	if err := cluster.WritePKI(l.PKI(), spec); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	cp := &ControlPlane{
		Server:          fmt.Sprintf("https://%s:%d", host.IP, l.APIPort()),
		AdminKubeconfig: l.Kubeconfig("admin"),
		Dir:             dir,
		Port:            l.APIPort(),
		layout:          l,
		log:             o.Log,
	}
	if err := cluster.WriteKubeconfigs(dir, cp.Server, l.PKI()); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	bin := func(n string) string { return filepath.Join(o.BinDir, n) }
	steps := []cluster.Process{
		cluster.EtcdProcess(bin("etcd"), l),
		cluster.APIServerProcess(bin("kube-apiserver"), l, host),
	}
	if o.ControllerManager {
		steps = append(steps, withSecurePort(cluster.ControllerManagerProcess(bin("kube-controller-manager"), l), ports[4]))
	}
	if o.Scheduler {
		steps = append(steps, withSecurePort(cluster.SchedulerProcess(bin("kube-scheduler"), l), ports[5]))
	}
	for _, p := range steps {
		if err := cp.run(ctx, p, o.ReadyTimeout); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// hostOf fills in the advertised address and node name.
func hostOf(o Options) (cluster.Host, error) {
	h := cluster.Host{IP: o.AdvertiseIP, NodeName: o.NodeName}
	if h.IP == nil || h.NodeName == "" {
		facts, err := cluster.HostFacts()
		if err != nil {
			return h, fmt.Errorf("controlplane: %w", err)
		}
		if h.IP == nil {
			h.IP = facts.IP
		}
		if h.NodeName == "" {
			h.NodeName = facts.NodeName
		}
	}
	return h, nil
}

// withSecurePort moves a component off the local cluster's fixed port.
func withSecurePort(p cluster.Process, port int) cluster.Process {
	args := make([]string, 0, len(p.Args))
	for _, a := range p.Args {
		if !strings.HasPrefix(a, "--secure-port=") {
			args = append(args, a)
		}
	}
	p.Args = append(args, "--secure-port="+strconv.Itoa(port))
	p.Health = fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	return p
}

// freePorts asks the kernel for n distinct free ports. They are released
// before use, so another process could take one in between; the API
// server's or etcd's start then fails loudly rather than silently sharing.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, fmt.Errorf("controlplane: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *ControlPlane) run(ctx context.Context, p cluster.Process, timeout time.Duration) error {
	logPath := filepath.Join(c.layout.Logs(), p.Name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	defer f.Close()
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: a test that dies (or is killed by go test's timeout)
	// takes its control plane with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("controlplane: start %s: %w", p.Name, err)
	}
	pr := &proc{name: p.Name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, pr)
	c.mu.Unlock()
	r := &cluster.Running{ProcState: cluster.ProcState{Name: p.Name, PID: cmd.Process.Pid, Log: logPath}, Done: pr.done}
	if err := cluster.WaitReady(ctx, c.log, r, p.Health, timeout); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	return nil
}

// ServerFor is the API server's URL at another address of this host (one
// of ExtraIPs, or 127.0.0.1).
func (c *ControlPlane) ServerFor(ip net.IP) string {
	return "https://" + net.JoinHostPort(ip.String(), strconv.Itoa(c.Port))
}

// Kubeconfig writes <Dir>/<name>.kubeconfig for a new client certificate
// with common name cn and organizations orgs (RBAC user and groups), e.g.
// ("kube-proxy", "system:kube-proxy") or ("node", "system:node:n1",
// "system:nodes"), and returns its path.
func (c *ControlPlane) Kubeconfig(name, cn string, orgs ...string) (string, error) {
	cert := "client-" + name
	spec := cluster.PKISpec{CAs: []string{"ca"}, Certs: []cluster.CertSpec{{
		Name: cert, CA: "ca", CN: cn, Orgs: orgs,
		Usages: clientUsage,
	}}}
	if err := cluster.WritePKI(c.layout.PKI(), spec); err != nil {
		return "", fmt.Errorf("controlplane: %w", err)
	}
	path := c.layout.Kubeconfig(name)
	if err := clientcmd.WriteToFile(*cluster.Kubeconfig(c.Server, c.layout.PKI(), cn, cert), path); err != nil {
		return "", fmt.Errorf("controlplane: %w", err)
	}
	return path, nil
}

// RESTConfig is an admin client configuration.
func (c *ControlPlane) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
}

// Stop kills every process (there is nothing to keep: the data is thrown
// away) and waits for them. Safe to call twice.
func (c *ControlPlane) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			c.log.Warn("control plane process did not exit", zap.String("process", p.name))
		}
	}
}
