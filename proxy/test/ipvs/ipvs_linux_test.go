// Package ipvs_test runs the proxy's sync loop against a real kernel's
// IPVS. It needs root and a kernel with IPVS, dummy and veth: `make
// test-ipvs` runs it inside user-mode-linux (this host's kernel has no IPVS).
// The Kubernetes objects are written to a real API server on the host,
// reached over a tap device (NODESUITE_UML_KUBECONFIG, written by the host
// side, e2e/bench/proxy-ipvs/umlhost); the proxy's informers watch it and
// everything from the informers down is the production code.
package ipvs_test

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/proxy/internal/ipvs"
	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
	"github.com/nodesuite/nodesuite/proxy/internal/syncer"
)

const (
	nodeName = "uml-node"
	nodeIP   = "192.168.10.1"
	clientIP = "192.168.10.2"
)

// Names are unique to this test (it also runs in its own UML kernel).
var backends = map[string]string{"be1": "10.244.1.2", "be2": "10.244.2.2"}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func topology(t *testing.T) {
	run(t, "ip", "netns", "add", "nsp-client")
	run(t, "ip", "link", "add", "nsp-vc", "type", "veth", "peer", "name", "eth0", "netns", "nsp-client")
	run(t, "ip", "addr", "add", nodeIP+"/24", "dev", "nsp-vc")
	run(t, "ip", "link", "set", "nsp-vc", "up")
	run(t, "ip", "-n", "nsp-client", "addr", "add", clientIP+"/24", "dev", "eth0")
	run(t, "ip", "-n", "nsp-client", "link", "set", "eth0", "up")
	run(t, "ip", "-n", "nsp-client", "link", "set", "lo", "up")
	run(t, "ip", "-n", "nsp-client", "route", "add", "default", "via", nodeIP)
	i := 1
	for _, be := range []string{"be1", "be2"} {
		ns, host := "nsp-"+be, fmt.Sprintf("nsp-v%d", i)
		run(t, "ip", "netns", "add", ns)
		run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", host)
		run(t, "ip", "link", "set", host, "up")
		run(t, "ip", "-n", ns, "addr", "add", backends[be]+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		i++
	}
}

// inNS runs f with the calling thread in network namespace name: sockets
// made there stay in it.
func inNS(t *testing.T, name string, f func() error) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = netns.Set(orig) }()
	if err := f(); err != nil {
		t.Fatal(err)
	}
}

// serve starts a backend: it greets with "NAME CLIENT-IP" and echoes lines
// prefixed with its name.
func serve(t *testing.T, be string) {
	var ln net.Listener
	inNS(t, "nsp-"+be, func() (err error) {
		ln, err = net.Listen("tcp", backends[be]+":8080")
		return err
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s %s\n", be, host)
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", be, sc.Text())
				}
			}()
		}
	}()
}

type conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
	source  string
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	var c net.Conn
	inNS(t, "nsp-client", func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	f := strings.Fields(line)
	return &conn{Conn: c, r: r, backend: f[0], source: f[1]}
}

func (c *conn) echo(t *testing.T, s string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, s)
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("echo over established connection to %s: %v", c.backend, err)
	}
	return strings.TrimSpace(line)
}

func hits(t *testing.T, addr string, n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		c := dial(t, addr)
		out = append(out, c.backend)
		c.Close()
	}
	return out
}

func service(name, ip string, nodePort int32, mod func(*v1.Service)) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeNodePort, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []v1.ServicePort{{Name: "tcp", Port: 80, NodePort: nodePort, Protocol: v1.ProtocolTCP}}}}
	if mod != nil {
		mod(s)
	}
	return s
}

func slice(svc string, bes ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("tcp"), Port: ptr.To(int32(8080)), Protocol: ptr.To(v1.ProtocolTCP)}}}
	for _, be := range bes {
		node := "other-node"
		if be == "be1" {
			node = nodeName // be1 is this node's Pod, be2 another node's
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{backends[be]}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

// counted counts finished syncs, so the test can wait for one.
type counted struct {
	*ipvs.Plane
	n atomic.Int64
}

func (c *counted) Sync(ctx context.Context, st *ss.State, changed sets.Set[ss.Key], full bool) error {
	err := c.Plane.Sync(ctx, st, changed, full)
	if err == nil {
		c.n.Add(1)
	}
	return err
}

// proxy is one run of the sync loop (one "process").
type proxy struct {
	plane  *counted
	cancel context.CancelFunc
	done   chan error
	os     *ipvs.LinuxOS
}

func startProxy(t *testing.T, client kubernetes.Interface) *proxy {
	t.Helper()
	osi, err := ipvs.NewLinuxOS()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("NSP_TRACE") != "" {
		osi.Trace = func(cmd string, stdin []byte, err error) {
			fmt.Fprintf(os.Stderr, "TRACE %s err=%v\n%s", cmd, err, stdin)
		}
	}
	// Warnings and errors (failed syncs) go to the test output.
	log, err := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	plane := ipvs.New(osi, ipvs.Options{Families: []v1.IPFamily{v1.IPv4Protocol},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, GracePeriod: 20 * time.Second}, log)
	cp := &counted{Plane: plane}
	s, err := syncer.New(client, cp, syncer.Options{NodeName: nodeName, Families: []v1.IPFamily{v1.IPv4Protocol},
		HostAddresses: ipvs.HostAddresses, SyncPeriod: 3 * time.Second, ConfigSyncPeriod: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proxy{cancel: cancel, done: make(chan error, 1), os: osi, plane: cp}
	go func() { p.done <- s.Run(ctx) }()
	return p
}

// synced waits for a sync that started after this call.
func (p *proxy) synced(t *testing.T, after int64) {
	t.Helper()
	eventually(t, "a completed sync", func() bool { return p.plane.n.Load() > after })
}

func (p *proxy) stop(t *testing.T) {
	p.cancel()
	if err := <-p.done; err != nil {
		t.Error(err)
	}
	p.os.Close()
}

// ipvsadm is the kernel's table as ipvsadm prints it (the independent view).
func ipvsadm(t *testing.T) string {
	out, err := exec.Command("ipvsadm", "-Ln").CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm: %v\n%s", err, out)
	}
	return string(out)
}

// dump is the netfilter side, for failure messages.
func dump() string {
	var b strings.Builder
	for _, c := range [][]string{{"iptables-save"}, {"ipset", "list"}, {"sysctl", "net.ipv4.vs.conntrack", "net.ipv4.ip_forward"}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s (%v)\n%s\n", strings.Join(c, " "), err, out)
	}
	return b.String()
}

// table is ipvsadm's listing without the connection counters.
func table(t *testing.T) string {
	var b strings.Builder
	for _, l := range strings.Split(ipvsadm(t), "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "->" {
			l = strings.Join(f[:4], " ")
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// eventually polls the kernel's view of one virtual server's real servers.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; kernel:\n%s", what, ipvsadm(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// obs is the test's own IPVS handle: a netlink socket must not be shared
// with the proxy's goroutines.
var obs *ipvs.LinuxOS

func reals(t *testing.T, _ *ipvs.LinuxOS, addr string) map[string]int {
	osi := obs
	ap := netip.MustParseAddrPort(addr)
	rs, err := osi.RealServers(ipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: ap.Addr(), Port: ap.Port()})
	if err != nil {
		return nil
	}
	m := map[string]int{}
	for _, r := range rs {
		m[r.AddrPort().String()] = r.Weight
	}
	return m
}

// hasVS reports whether the kernel has a TCP virtual server at addr.
func hasVS(t *testing.T, addr string) bool {
	vss, err := obs.VirtualServers()
	if err != nil {
		t.Fatalf("list virtual servers: %v", err)
	}
	for _, vs := range vss {
		if vs.Protocol == v1.ProtocolTCP && netip.AddrPortFrom(vs.Addr, vs.Port).String() == addr {
			return true
		}
	}
	return false
}

// boundTo reports whether addr is on kube-ipvs0, as ip(8) shows it.
func boundTo(t *testing.T, addr string) bool {
	out, err := exec.Command("ip", "-o", "addr", "show", "dev", ipvs.DummyName).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show %s: %v\n%s", ipvs.DummyName, err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, addr+"/") {
			return true
		}
	}
	return false
}

func alternates(got []string) bool {
	seen := map[string]int{}
	for i, b := range got {
		seen[b]++
		if i > 0 && got[i-1] == b {
			return false
		}
	}
	return len(seen) == 2
}

// apiClient is a client of the API server the host side started.
func apiClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	path := os.Getenv("NODESUITE_UML_KUBECONFIG")
	if path == "" {
		t.Fatal("NODESUITE_UML_KUBECONFIG is not set: the host side (make test-ipvs) passes the API server's kubeconfig")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// create writes objects through the API, as a controller would.
func create(t *testing.T, client kubernetes.Interface, objs ...any) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.Namespace:
			_, err = client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		case *v1.Node:
			_, err = client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
		case *v1.Service:
			_, err = client.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = client.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("create: unexpected %T", o)
		}
		if err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}
}

func TestIPVS(t *testing.T) {
	if os.Getenv("NODESUITE_UML_IPVS") == "" {
		t.Skip("real-kernel IPVS test: run by `make test-ipvs` inside user-mode-linux (NODESUITE_UML_IPVS=1)")
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Fatalf("no IPVS in this kernel: %v", err)
	}
	var err error
	if obs, err = ipvs.NewLinuxOS(); err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	topology(t)
	for be := range backends {
		serve(t, be)
	}
	ctx := context.Background()
	client := apiClient(t)
	create(t, client,
		&v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}},
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}}},
		service("web", "10.96.0.10", 30080, nil), slice("web", "be1", "be2"),
		service("sticky", "10.96.0.11", 30081, func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }),
		slice("sticky", "be1", "be2"),
		service("local", "10.96.0.12", 30082, func(s *v1.Service) {
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
		}), slice("local", "be1", "be2"),
	)
	p := startProxy(t, client)
	defer func() { p.stop(t) }()
	p.synced(t, 0)
	eventually(t, "web's real servers", func() bool { return len(reals(t, p.os, "10.96.0.10:80")) == 2 })
	eventually(t, "local's NodePort", func() bool { return len(reals(t, p.os, nodeIP+":30082")) == 1 })
	t.Logf("kernel after first sync:\n%s", ipvsadm(t))

	t.Run("ClusterIP round robin reaches every backend in turn", func(t *testing.T) {
		if got := hits(t, "10.96.0.10:80", 6); !alternates(got) {
			t.Errorf("backends %v: want be1 and be2 alternating", got)
		}
	})
	t.Run("NodePort round robin reaches every backend in turn", func(t *testing.T) {
		if got := hits(t, nodeIP+":30080", 6); !alternates(got) {
			t.Errorf("backends %v: want be1 and be2 alternating", got)
		}
	})
	t.Run("session affinity pins the client", func(t *testing.T) {
		got := hits(t, "10.96.0.11:80", 6)
		for _, b := range got {
			if b != got[0] {
				t.Fatalf("backends %v: want one backend for one client", got)
			}
		}
	})
	t.Run("eTP Local NodePort: local endpoints only, client source kept", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			c := dial(t, nodeIP+":30082")
			c.Close()
			if c.backend != "be1" || c.source != clientIP {
				t.Errorf("connection %d reached %s seeing source %s; want be1 (the local endpoint) seeing %s", i, c.backend, c.source, clientIP)
			}
		}
	})
	t.Run("ClusterIP from outside the cluster CIDR is masqueraded", func(t *testing.T) {
		c := dial(t, "10.96.0.10:80")
		c.Close()
		if c.source == clientIP {
			t.Errorf("backend saw the client's own address %s; want the node's\n%s", c.source, dump())
		}
	})
	t.Run("removed endpoint drains: established connection works, new ones avoid it", func(t *testing.T) {
		c := dial(t, "10.96.0.10:80")
		defer c.Close()
		gone, stays := c.backend, map[string]string{"be1": "be2", "be2": "be1"}[c.backend]
		n0 := p.plane.n.Load()
		if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice("web", stays), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		goneAP := backends[gone] + ":8080"
		p.synced(t, n0)
		eventually(t, gone+" at weight 0", func() bool { w, ok := reals(t, p.os, "10.96.0.10:80")[goneAP]; return ok && w == 0 })
		if got := c.echo(t, "still there?"); got != gone+" still there?" {
			t.Errorf("established connection answered %q", got)
		}
		for _, b := range hits(t, "10.96.0.10:80", 4) {
			if b != stays {
				t.Errorf("new connection reached draining %s", b)
			}
		}
		if got := c.echo(t, "and now?"); got != gone+" and now?" {
			t.Errorf("established connection answered %q", got)
		}
		c.Close()
		// GracePeriod is 20s here: the drained real server goes after it.
		eventually(t, gone+" deleted", func() bool { _, ok := reals(t, p.os, "10.96.0.10:80")[goneAP]; return !ok })
		if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, slice("web", "be1", "be2"), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "web back to two", func() bool { return len(reals(t, p.os, "10.96.0.10:80")) == 2 })
	})
	t.Run("Service added then deleted through the API: external IP served, then virtual servers and address gone", func(t *testing.T) {
		const ext = "172.16.0.100"
		n0 := p.plane.n.Load()
		create(t, client, service("ext", "10.96.0.13", 0, func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeClusterIP
			s.Spec.ExternalIPs = []string{ext}
		}), slice("ext", "be1", "be2"))
		p.synced(t, n0)
		eventually(t, "ext's external IP real servers", func() bool { return len(reals(t, p.os, ext+":80")) == 2 })
		if !boundTo(t, ext) {
			t.Errorf("%s not bound to %s", ext, ipvs.DummyName)
		}
		if got := hits(t, ext+":80", 4); !alternates(got) {
			t.Errorf("external IP backends %v: want be1 and be2 alternating", got)
		}
		if err := client.CoreV1().Services("ns").Delete(ctx, "ext", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "ext's virtual servers deleted", func() bool {
			return !hasVS(t, ext+":80") && !hasVS(t, "10.96.0.13:80")
		})
		eventually(t, "ext's addresses unbound", func() bool { return !boundTo(t, ext) && !boundTo(t, "10.96.0.13") })
		if err := client.DiscoveryV1().EndpointSlices("ns").Delete(ctx, "ext-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the periodic reconcile puts back what was changed behind the proxy's back", func(t *testing.T) {
		web := ipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: netip.MustParseAddr("10.96.0.10"), Port: 80}
		want := reals(t, p.os, "10.96.0.10:80")
		rs, err := obs.RealServers(web)
		if err != nil || len(rs) == 0 {
			t.Fatalf("web's real servers: %v %v", rs, err)
		}
		if err := obs.DeleteRealServer(web, rs[0]); err != nil {
			t.Fatal(err)
		}
		stray := ipvs.VirtualServer{VSKey: ipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: web.Addr, Port: 81}, Scheduler: "rr"}
		if err := obs.AddVirtualServer(stray); err != nil {
			t.Fatal(err)
		}
		// SyncPeriod is 3s here; no API change comes to trigger a sync.
		eventually(t, "web's real servers back", func() bool { return maps.Equal(reals(t, p.os, "10.96.0.10:80"), want) })
		eventually(t, "the stray virtual server gone", func() bool { return !hasVS(t, "10.96.0.10:81") })
	})
	t.Run("established connection survives a proxy restart; kernel not flushed", func(t *testing.T) {
		c := dial(t, "10.96.0.10:80")
		defer c.Close()
		before := table(t)
		p.stop(t)
		if got := c.echo(t, "between"); got != c.backend+" between" {
			t.Errorf("with no proxy running: %q", got)
		}
		p = startProxy(t, client)
		p.synced(t, 0)
		if got := c.echo(t, "after"); got != c.backend+" after" {
			t.Errorf("after restart: %q", got)
		}
		if after := table(t); after != before {
			t.Errorf("restart changed the kernel table:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if got := hits(t, "10.96.0.10:80", 4); !alternates(got) {
			t.Errorf("after restart backends %v", got)
		}
	})
}
