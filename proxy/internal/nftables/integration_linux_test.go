package nftables

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// The integration test programs real nftables in network namespaces it
// creates: a "node" namespace holding the rules, a "client" namespace
// routed through it, and a "backend" namespace running TCP servers:
//
//	client 10.250.1.2 --- 10.250.1.1 node 10.244.250.1 --- 10.244.250.2/.3 backend
//
// Nothing runs in the host's namespace: every nft command is started from an
// OS thread that has entered the node namespace, and the namespaces have no
// link to the uplink.

type testNS struct {
	name string
	h    netns.NsHandle
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNS(t *testing.T, name string) *testNS {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	return &testNS{name: name, h: h}
}

func (n *testNS) exec(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", n.name}, args...)...)
}

// do runs f on an OS thread inside the namespace. The thread is never
// returned to the scheduler (the goroutine exits locked), so no other code
// can run in the namespace by accident, nor f in the host's.
func (n *testNS) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.h); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// serve starts a TCP server in the namespace that answers each connection
// with its own address, then echoes lines.
func (n *testNS) serve(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	if err := n.do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "%s from %s\n", addr, c.RemoteAddr().(*net.TCPAddr).IP)
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// serveUDP answers every datagram with the server's own address.
func (n *testNS) serveUDP(t *testing.T, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := n.do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 100)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(addr), from)
		}
	}()
}

// dial connects from the namespace and returns the connection and the
// server's greeting ("<backend addr> from <client ip as seen>").
func (n *testNS) dial(addr string) (net.Conn, string, error) {
	var c net.Conn
	if err := n.do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	}); err != nil {
		return nil, "", err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	_ = c.SetDeadline(time.Time{})
	return c, strings.TrimSpace(line), nil
}

func requireIntegration(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs the nft binary (apt package nftables)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (apt package iproute2)")
	}
}

func TestIntegrationRealNFTables(t *testing.T) {
	requireIntegration(t)
	id := fmt.Sprintf("nftit-%d", os.Getpid())
	node, client, backend := newNS(t, id+"-node"), newNS(t, id+"-cl"), newNS(t, id+"-be")

	// veths are created inside the node namespace and moved out, so not
	// even a transient device appears in the host's namespace.
	node.exec(t, "ip", "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", client.name)
	node.exec(t, "ip", "link", "add", "be0", "type", "veth", "peer", "name", "eth0", "netns", backend.name)
	node.exec(t, "ip", "addr", "add", "10.250.1.1/24", "dev", "cl0")
	node.exec(t, "ip", "addr", "add", "10.244.250.1/24", "dev", "be0")
	for _, dev := range []string{"lo", "cl0", "be0"} {
		node.exec(t, "ip", "link", "set", dev, "up")
	}
	// Locally generated packets to a ClusterIP need a route before DNAT;
	// inside this namespace it can only lead to the backend veth.
	node.exec(t, "ip", "route", "add", "10.96.0.0/16", "dev", "be0")
	node.exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	client.exec(t, "ip", "addr", "add", "10.250.1.2/24", "dev", "eth0")
	client.exec(t, "ip", "link", "set", "eth0", "up")
	client.exec(t, "ip", "link", "set", "lo", "up")
	client.exec(t, "ip", "route", "add", "default", "via", "10.250.1.1")
	backend.exec(t, "ip", "addr", "add", "10.244.250.2/24", "dev", "eth0")
	backend.exec(t, "ip", "addr", "add", "10.244.250.3/24", "dev", "eth0")
	backend.exec(t, "ip", "link", "set", "eth0", "up")
	backend.exec(t, "ip", "link", "set", "lo", "up")
	backend.exec(t, "ip", "route", "add", "default", "via", "10.244.250.1")
	backend.serve(t, "10.244.250.2:8080")
	backend.serve(t, "10.244.250.3:8080")

	var lastNFT *countingNFT
	newProxier := func() *Proxier {
		var p *Proxier
		if err := node.do(func() error {
			nft, err := knftables.New(knftables.IPv4Family, DefaultTableName)
			if err != nil {
				return err
			}
			lastNFT = &countingNFT{Interface: nft}
			p, err = New(zap.NewNop(), Config{
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
				NFTables:     map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: lastNFT},
				// Real netlink: Sync always runs inside the node namespace.
				Conntrack: NewNetlinkConntrack(),
			})
			return err
		}); err != nil {
			t.Fatalf("new proxier: %v", err)
		}
		return p
	}
	sync := func(p *Proxier, st *servicestate.State, full bool, changed ...servicestate.Key) {
		t.Helper()
		if err := node.do(func() error {
			return p.Sync(context.Background(), st, sets.New(changed...), full)
		}); err != nil {
			t.Fatalf("sync: %v\n%s", err, node.exec(t, "nft", "list", "table", "ip", DefaultTableName))
		}
	}

	web := key("default", "web", "http", v1.ProtocolTCP)
	empty := key("default", "empty", "", v1.ProtocolTCP)
	st := newState()
	st.NodeIPs = addrs("10.250.1.1")
	put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.1"), Port: 80, NodePort: 30080},
		ep("10.244.250.2", 8080, true), ep("10.244.250.3", 8080, true))
	put(st, empty, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.2"), Port: 80})
	p := newProxier()
	sync(p, st, true)

	// reach dials until every backend answered (or 40 tries).
	reach := func(ns *testNS, addr string, want ...string) map[string]string {
		t.Helper()
		seen := map[string]string{}
		for i := 0; i < 40 && len(seen) < len(want); i++ {
			c, greeting, err := ns.dial(addr)
			if err != nil {
				t.Fatalf("dial %s from %s: %v", addr, ns.name, err)
			}
			c.Close()
			f := strings.Fields(greeting)
			seen[f[0]] = f[2]
		}
		for _, w := range want {
			if _, ok := seen[w]; !ok {
				t.Errorf("%s from %s: backend %s never answered (saw %v)", addr, ns.name, w, seen)
			}
		}
		return seen
	}
	both := []string{"10.244.250.2:8080", "10.244.250.3:8080"}

	t.Run("ClusterIP from outside the cluster CIDR: both backends, masqueraded", func(t *testing.T) {
		for be, src := range reach(client, "10.96.250.1:80", both...) {
			if src != "10.244.250.1" {
				t.Errorf("%s saw source %s, want the node's (masqueraded)", be, src)
			}
		}
	})
	t.Run("ClusterIP from the node itself", func(t *testing.T) {
		reach(node, "10.96.250.1:80", both...)
	})
	t.Run("NodePort", func(t *testing.T) {
		reach(client, "10.250.1.1:30080", both...)
	})
	t.Run("no endpoints: connection refused", func(t *testing.T) {
		_, _, err := client.dial("10.96.250.2:80")
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial a Service without endpoints: %v, want connection refused", err)
		}
	})

	t.Run("externalTrafficPolicy Local: client source kept", func(t *testing.T) {
		local := key("default", "local", "", v1.ProtocolTCP)
		put(st, local, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.3"), Port: 80, NodePort: 30081, ExternalPolicyLocal: true},
			ep("10.244.250.2", 8080, true))
		sync(p, st, false, local)
		seen := reach(client, "10.250.1.1:30081", "10.244.250.2:8080")
		if src := seen["10.244.250.2:8080"]; src != "10.250.1.2" {
			t.Errorf("backend saw source %s, want the client's 10.250.1.2", src)
		}
	})
	t.Run("loadBalancerSourceRanges", func(t *testing.T) {
		lb := key("default", "lb", "", v1.ProtocolTCP)
		sp := servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.4"), Port: 80,
			LoadBalancerIPs:          addrs("198.51.100.1"),
			LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("10.250.1.0/24")}}
		put(st, lb, sp, ep("10.244.250.3", 8080, true))
		sync(p, st, false, lb)
		reach(client, "198.51.100.1:80", "10.244.250.3:8080")
		sp.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}
		put(st, lb, sp, ep("10.244.250.3", 8080, true))
		sync(p, st, false, lb)
		if c, _, err := client.dial("198.51.100.1:80"); err == nil {
			c.Close()
			t.Errorf("a source outside loadBalancerSourceRanges got through")
		}
	})

	// An established connection, kept across the changes below.
	conn, greeting, err := client.dial("10.96.250.1:80")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	kept := strings.Fields(greeting)[0]
	echo := func(what string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", what); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != what {
			t.Fatalf("%s: established connection broken: %q, %v", what, line, err)
		}
	}

	t.Run("restart: adopts the table, rewrites nothing", func(t *testing.T) {
		before := node.exec(t, "nft", "-a", "list", "table", "ip", DefaultTableName)
		p2 := newProxier()
		sync(p2, st, true)
		if lastNFT.runs != 0 {
			t.Errorf("restart ran a transaction on an identical state:\n%s", lastNFT.last)
		}
		after := node.exec(t, "nft", "-a", "list", "table", "ip", DefaultTableName)
		if before != after {
			t.Errorf("restart changed the table (handles included):\nbefore:\n%s\nafter:\n%s", before, after)
		}
		echo("after restart")
		p = p2
	})
	t.Run("endpoint change: one backend left, incremental", func(t *testing.T) {
		other := "10.244.250.3"
		if kept == "10.244.250.3:8080" {
			other = "10.244.250.2"
		}
		keep := netip.MustParseAddrPort(kept)
		put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.1"), Port: 80, NodePort: 30080},
			ep(keep.Addr().String(), 8080, true))
		sync(p, st, false, web)
		seen := reach(client, "10.96.250.1:80", kept)
		if _, ok := seen[other+":8080"]; ok {
			t.Errorf("removed backend %s still receives new connections", other)
		}
		echo("after endpoint change")
	})
	t.Run("IPv6 table: ClusterIP from the node", func(t *testing.T) {
		node.exec(t, "ip", "addr", "add", "fd00:10:244:250::1/64", "dev", "be0", "nodad")
		node.exec(t, "ip", "route", "add", "fd00:10:96::/112", "dev", "be0")
		backend.exec(t, "ip", "addr", "add", "fd00:10:244:250::2/64", "dev", "eth0", "nodad")
		backend.exec(t, "ip", "route", "add", "default", "via", "fd00:10:244:250::1")
		backend.serve(t, "[fd00:10:244:250::2]:8080")
		var p6 *Proxier
		if err := node.do(func() error {
			nft, err := knftables.New(knftables.IPv6Family, DefaultTableName)
			if err != nil {
				return err
			}
			p6, err = New(zap.NewNop(), Config{
				Families:     []v1.IPFamily{v1.IPv6Protocol},
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:10:244::/48")},
				NFTables:     map[v1.IPFamily]knftables.Interface{v1.IPv6Protocol: nft},
				Conntrack:    &fakeConntrack{},
			})
			return err
		}); err != nil {
			t.Fatalf("new proxier: %v", err)
		}
		st6 := newState()
		st6.NodeIPs = nil
		k6 := web
		k6.Family = v1.IPv6Protocol
		put(st6, k6, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("fd00:10:96::250"), Port: 80, NodePort: 30080, StickyMaxAgeSeconds: 60},
			ep("fd00:10:244:250::2", 8080, true))
		sync(p6, st6, true)
		reach(node, "[fd00:10:96::250]:80", "[fd00:10:244:250::2]:8080")
	})
	t.Run("UDP: flows to a removed endpoint are cleared from conntrack", func(t *testing.T) {
		backend.serveUDP(t, "10.244.250.2:5353")
		backend.serveUDP(t, "10.244.250.3:5353")
		dns := key("default", "dns", "", v1.ProtocolUDP)
		sp := servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.250.5"), Port: 53}
		put(st, dns, sp, ep("10.244.250.2", 5353, true))
		sync(p, st, false, dns)
		var c *net.UDPConn
		if err := client.do(func() (err error) {
			c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.96.250.5:53")))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ask := func() string {
			t.Helper()
			buf := make([]byte, 100)
			for i := 0; i < 3; i++ {
				_, _ = c.Write([]byte("q"))
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if n, err := c.Read(buf); err == nil {
					return string(buf[:n])
				}
			}
			t.Fatalf("no UDP answer through the ClusterIP")
			return ""
		}
		if got := ask(); got != "10.244.250.2:5353" {
			t.Fatalf("first answer from %s", got)
		}
		// Same client socket (same conntrack entry) after the endpoint moved.
		put(st, dns, sp, ep("10.244.250.3", 5353, true))
		sync(p, st, false, dns)
		if got := ask(); got != "10.244.250.3:5353" {
			t.Errorf("after the endpoint change the flow still reaches %s: conntrack entry not cleared", got)
		}
	})
	t.Run("Service removed: chains and elements gone", func(t *testing.T) {
		remove(st, empty)
		sync(p, st, false, empty)
		out := node.exec(t, "nft", "list", "table", "ip", DefaultTableName)
		if strings.Contains(out, "default/empty") || strings.Contains(out, "10.96.250.2") {
			t.Errorf("leftovers of the removed Service:\n%s", out)
		}
	})
}
