package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodesuite/nodesuite/e2e/harness/runtime"
)

// Binaries are the paths Up runs.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubelet, KubeProxy string
	Containerd, Runc, CNIBinDir                                       string
	// Ours: our daemons (used when chosen).
	OurKubelet, OurRuntimeShim, OurProxy string
}

// Images is how the runtime gets the cluster's images: Setup runs once
// containerd is up and returns the hosts.toml mirror dir contents.
type ImageSource interface {
	// MirrorAddr is host:port of a registry on 127.0.0.1 serving every
	// image under its upstream name, running for as long as the cluster.
	MirrorAddr() string
}

// Cluster is a running (or starting) cluster.
type Cluster struct {
	Log    *zap.Logger
	Layout Layout
	Host   Host
	Opts   Options
	Bins   Binaries
	State  *State
	Client kubernetes.Interface
}

// HostFacts finds the uplink's address (the source of the default route;
// asking the kernel sends nothing) and the node name.
func HostFacts() (Host, error) {
	routes, err := netlink.RouteGet(net.ParseIP("192.0.2.254"))
	var ip net.IP
	if err == nil && len(routes) > 0 && routes[0].Src != nil {
		ip = routes[0].Src
	}
	if ip == nil {
		dflt, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: nil}, netlink.RT_FILTER_DST)
		if err == nil {
			for _, r := range dflt {
				if r.Src != nil {
					ip = r.Src
				}
			}
		}
	}
	if ip == nil {
		return Host{}, errors.New("host facts: no default route with a source address; the API server needs the host's own address")
	}
	name, err := os.Hostname()
	if err != nil {
		return Host{}, fmt.Errorf("host facts: %w", err)
	}
	return Host{IP: ip, NodeName: strings.ToLower(name)}, nil
}

// sysctls up turns on: forwarding for Pod traffic and bridge netfilter so
// Service DNAT sees Pod-to-Pod traffic on the bridge. Down restores them.
var sysctls = map[string]string{
	"/proc/sys/net/ipv4/ip_forward":                 "1",
	"/proc/sys/net/bridge/bridge-nf-call-iptables":  "1",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "1",
}

// PrepareHost installs the guard first, then the bridge with the safety
// routes, the sysctls and the cgroup parent.
func (c *Cluster) PrepareHost(ctx context.Context) error {
	nft, err := NewGuardNft()
	if err != nil {
		return err
	}
	if err := AddGuard(ctx, nft); err != nil {
		return err
	}
	c.Log.Info("guard installed", zap.String("table", "inet "+GuardTable))
	if err := setupBridge(); err != nil {
		return err
	}
	orig := map[string]string{}
	for path, v := range sysctls {
		old, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", path, err)
		}
		orig[path] = strings.TrimSpace(string(old))
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", path, err)
		}
	}
	if err := c.State.Update(func(s *State) {
		if s.Sysctls == nil {
			s.Sysctls = orig
		}
	}); err != nil {
		return err
	}
	hier, err := os.ReadDir(CgroupFS)
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	for _, h := range hier {
		// Every v1 hierarchy, the named systemd one too (the kubelet checks
		// them all); not the empty v2 one.
		if !h.IsDir() || h.Name() == "unified" {
			continue
		}
		dir := filepath.Join(CgroupFS, h.Name(), CgroupParent)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", h.Name(), err)
		}
		if h.Name() == "cpuset" {
			// A v1 cpuset cgroup takes no tasks until cpus and mems are set.
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(CgroupFS, "cpuset", f))
				if err != nil {
					return fmt.Errorf("cgroup cpuset: %w", err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup cpuset: %w", err)
				}
			}
		}
	}
	return nil
}

// setupBridge creates the CNI bridge with the gateway address before any
// Pod exists and routes both cluster ranges onto it, so a packet for them
// never follows the default route out of the uplink.
func setupBridge() error {
	var br netlink.Link
	br, err := netlink.LinkByName(BridgeName)
	if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = BridgeName
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("bridge %s: %w", BridgeName, err)
		}
		if br, err = netlink.LinkByName(BridgeName); err != nil {
			return fmt.Errorf("bridge %s: %w", BridgeName, err)
		}
	}
	addr, err := netlink.ParseAddr(BridgeCIDR)
	if err != nil {
		return err
	}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("bridge address: %w", err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bridge up: %w", err)
	}
	for _, cidr := range []string{PodCIDR, ServiceCIDR} {
		_, dst, _ := net.ParseCIDR(cidr)
		r := &netlink.Route{LinkIndex: br.Attrs().Index, Dst: dst, Priority: 4000, Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s: %w", cidr, err)
		}
	}
	return nil
}

// WriteFiles writes PKI, kubeconfigs, component configs, resolv.conf and
// the CNI network.
func (c *Cluster) WriteFiles(mode string) error {
	l := c.Layout
	for _, d := range []string{l.Dir, l.Logs(), l.Config(), l.CNIConfDir(), l.CNIIPAMDir(), l.StaticPods(), l.PodLogs(), l.VolumePlugins(), l.FlexVolume(), l.RunDir, l.RegistryHostsDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	if err := WritePKI(l.PKI(), ClusterPKI(c.Host.IP, c.Host.NodeName)); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", c.Host.IP, l.APIPort())
	if err := WriteKubeconfigs(l.Dir, server, l.PKI()); err != nil {
		return err
	}
	kcfg, err := MarshalConfig(KubeletConfig(l))
	if err != nil {
		return err
	}
	pcfg, err := MarshalConfig(ProxyConfig(l, c.Host, mode))
	if err != nil {
		return err
	}
	files := map[string]string{
		l.KubeletConfig(): string(kcfg),
		l.ProxyConfig():   string(pcfg),
		l.ResolvConf():    ResolvConf(c.Host.IP),
		filepath.Join(l.CNIConfDir(), "10-nodesuite.conflist"): CNIConfList(l, NodePodCIDR),
	}
	for path, body := range files {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// start starts p detached and waits for its health endpoint.
func (c *Cluster) start(ctx context.Context, p Process, timeout time.Duration, env ...string) error {
	c.Log.Info("starting", zap.String("process", p.Name))
	r, err := StartDetached(p, c.Layout.Logs(), env, c.State)
	if err != nil {
		return err
	}
	return WaitReady(ctx, c.Log, r, p.Health, timeout)
}

// StartControlPlane runs etcd, kube-apiserver, controller-manager and
// scheduler and waits until the default ServiceAccount exists.
func (c *Cluster) StartControlPlane(ctx context.Context) error {
	l, b := c.Layout, c.Bins
	if err := c.start(ctx, EtcdProcess(b.Etcd, l), 30*time.Second); err != nil {
		return err
	}
	if err := c.start(ctx, APIServerProcess(b.APIServer, l, c.Host), 90*time.Second); err != nil {
		return err
	}
	if err := c.start(ctx, ControllerManagerProcess(b.ControllerManager, l), 60*time.Second); err != nil {
		return err
	}
	if err := c.start(ctx, SchedulerProcess(b.Scheduler, l), 60*time.Second); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig("admin"))
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	if c.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.poll(ctx, "default ServiceAccount", 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	start := time.Now()
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, cond); err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	c.Log.Info("ready", zap.String("what", what), zap.Duration("after", time.Since(start).Round(time.Millisecond)))
	return nil
}

// CRISocket is where the kubelet finds the runtime.
func (c *Cluster) CRISocket() string {
	if c.Opts.Runtime == Ours {
		return c.Layout.CRISocket()
	}
	return c.Layout.ContainerdSocket()
}

// StartRuntime runs the private containerd (with its CRI, or without it and
// our runtime-shim in front).
func (c *Cluster) StartRuntime(ctx context.Context) error {
	l, b := c.Layout, c.Bins
	paths := RuntimePaths{Containerd: b.Containerd, Runc: b.Runc, CNIBinDir: b.CNIBinDir, RegistryHostsDir: l.RegistryHostsDir()}
	if err := os.WriteFile(l.ContainerdConfig(), []byte(runtime.ContainerdConfig(ContainerdParams(l, paths, c.Opts.Runtime != Ours))), 0o644); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	if err := c.State.Update(func(s *State) { s.RuncBin, s.RuncRoot = b.Runc, l.RuncRoot() }); err != nil {
		return err
	}
	// containerd finds containerd-shim-runc-v2 on PATH.
	env := []string{"PATH=" + filepath.Dir(b.Containerd) + ":" + os.Getenv("PATH")}
	if err := c.start(ctx, ContainerdProcess(b.Containerd, l), 0, env...); err != nil {
		return err
	}
	if err := waitSocket(ctx, l.ContainerdSocket(), 30*time.Second); err != nil {
		return fmt.Errorf("containerd: %w; last log lines:\n%s", err, Tail(filepath.Join(l.Logs(), "containerd.log"), 15))
	}
	if c.Opts.Runtime == Ours {
		if err := c.start(ctx, RuntimeShimProcess(b.OurRuntimeShim, l, paths), 60*time.Second); err != nil {
			return err
		}
		if err := waitSocket(ctx, l.CRISocket(), 30*time.Second); err != nil {
			return fmt.Errorf("runtime-shim: %w", err)
		}
	}
	return nil
}

// clusterPorts are the TCP ports the cluster's processes listen on.
var clusterPorts = []int{EtcdPort, EtcdPeer, EtcdMetrics, APIPort, 10257, 10259, 10250, 10248, 10256, 10249, 5111}

// WaitPortsFree waits until every cluster port can be bound: a process
// stopped a moment ago may still hold its listener.
func WaitPortsFree(ctx context.Context, timeout time.Duration) error {
	if err := waitPortsFree(ctx, clusterPorts, timeout); err != nil {
		return fmt.Errorf("%w (another cluster or program? see ss -ltnp)", err)
	}
	return nil
}

func waitSocket(ctx context.Context, path string, timeout time.Duration) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		conn, err := net.Dial("unix", path)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
}

// StartNode runs the kubelet and the proxy and waits for the Node to be
// Ready with the pod CIDR the CNI config was written for.
func (c *Cluster) StartNode(ctx context.Context, mode string) error {
	l, b := c.Layout, c.Bins
	kubelet := KubeletProcess(b.Kubelet, l, c.Host)
	if c.Opts.Kubelet == Ours {
		kubelet.Path = b.OurKubelet
	}
	for i, a := range kubelet.Args {
		if strings.HasPrefix(a, "--container-runtime-endpoint=") {
			kubelet.Args[i] = kv("container-runtime-endpoint", "unix://"+c.CRISocket())
		}
	}
	// Recorded before the kubelet starts: its iptables chains need the
	// same cleanup as the proxy's.
	if err := c.State.Update(func(s *State) { s.ProxyBin = b.KubeProxy }); err != nil {
		return err
	}
	if err := c.start(ctx, kubelet, 90*time.Second); err != nil {
		return err
	}
	proxy := ProxyProcess(b.KubeProxy, l, c.Host, mode)
	if c.Opts.Proxy == Ours {
		proxy.Path = b.OurProxy
	}
	if err := c.start(ctx, proxy, 60*time.Second); err != nil {
		return err
	}
	return c.poll(ctx, "node Ready", 120*time.Second, func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.Host.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if n.Spec.PodCIDR != "" && n.Spec.PodCIDR != NodePodCIDR {
			return false, fmt.Errorf("node got pod CIDR %s, the CNI config was written for %s", n.Spec.PodCIDR, NodePodCIDR)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return n.Spec.PodCIDR != "", nil
			}
		}
		return false, nil
	})
}

func createIgnoreExists(err error) error {
	if err == nil || apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
