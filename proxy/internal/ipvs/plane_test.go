package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

// snap is the fake kernel in a form that reads well in a diff: virtual
// servers as "proto/ip:port sched timeout" -> "ip:port w=N" lists.
type snap struct {
	VS      map[string][]string
	Addrs   []string
	IPSets  map[string][]string
	Sysctls map[string]string
	CT      []string
}

func snapshot(f *Fake) snap {
	s := snap{VS: map[string][]string{}, IPSets: map[string][]string{}, Sysctls: f.S.Sysctls}
	for k, v := range f.S.VirtualServers {
		name := fmt.Sprintf("%s %s %d", k, v.VS.Scheduler, v.VS.Timeout)
		rs := []string{}
		for ap, r := range v.Reals {
			rs = append(rs, fmt.Sprintf("%s w=%d", ap, r.Weight))
		}
		sort.Strings(rs)
		s.VS[name] = rs
	}
	for _, x := range f.S.Links[DummyName] {
		s.Addrs = append(s.Addrs, x.String())
	}
	for n, e := range f.S.IPSetEntries {
		if len(e) > 0 {
			s.IPSets[n] = e
		}
	}
	for _, c := range f.S.Conntrack {
		s.CT = append(s.CT, fmt.Sprintf("%s dst=%s:%d replysrc=%s", c.Protocol, c.OrigDst, c.OrigDstPort, c.ReplySrc))
	}
	return s
}

var (
	webName = ss.ServicePortName{Namespace: "ns", Name: "web", Port: "http", Protocol: v1.ProtocolTCP}
	dnsName = ss.ServicePortName{Namespace: "ns", Name: "dns", Port: "dns", Protocol: v1.ProtocolUDP}
	web     = ss.Key{Name: webName, Family: v1.IPv4Protocol}
	web6    = ss.Key{Name: webName, Family: v1.IPv6Protocol}
	dns     = ss.Key{Name: dnsName, Family: v1.IPv4Protocol}
)

func ep(ip string, port int32, local bool) ss.Endpoint {
	return ss.Endpoint{IP: a(ip), Port: port, Ready: true, Serving: true, IsLocal: local}
}

// state builds a State with web (NodePort, LB with source range, external
// IP, eTP Local, affinity) and dns (UDP ClusterIP) and an IPv6 web.
func state(webEPs []ss.Endpoint, dnsEPs []ss.Endpoint) *ss.State {
	st := &ss.State{Services: map[ss.Key]*ss.ServicePort{
		web: {Name: webName, Family: v1.IPv4Protocol, ClusterIP: a("10.96.0.10"), Port: 80, NodePort: 30080,
			ExternalIPs: []netip.Addr{a("203.0.113.7")}, LoadBalancerIPs: []netip.Addr{a("203.0.113.9")},
			LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			StickyMaxAgeSeconds:      300, ExternalPolicyLocal: true, HealthCheckNodePort: 31000},
		web6: {Name: webName, Family: v1.IPv6Protocol, ClusterIP: a("fd00::10"), Port: 80, Scheduler: "sh"},
		dns:  {Name: dnsName, Family: v1.IPv4Protocol, ClusterIP: a("10.96.0.53"), Port: 53},
	}, Endpoints: map[ss.Key][]ss.Endpoint{web: webEPs, dns: dnsEPs, web6: {ep("fd01::2", 8080, true)}},
		LocalEndpoints: map[ss.Key][]ss.Endpoint{web6: {ep("fd01::2", 8080, true)}},
		NodeIPs:        []netip.Addr{a("192.0.2.10"), a("2001:db8::10")}}
	for _, e := range webEPs {
		if e.IsLocal {
			st.LocalEndpoints[web] = append(st.LocalEndpoints[web], e)
		}
	}
	return st
}

func newPlane(f *Fake, now *time.Time) *Plane {
	return New(f, Options{Families: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol},
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, GracePeriod: time.Minute,
		Now: func() time.Time { return *now }}, zap.NewNop())
}

func fullWant() snap {
	return snap{
		VS: map[string][]string{
			"TCP/10.96.0.10:80 rr 300":    {"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=1"},
			"TCP/203.0.113.7:80 rr 300":   {"10.244.0.2:8080 w=1"},
			"TCP/203.0.113.9:80 rr 300":   {"10.244.0.2:8080 w=1"},
			"TCP/192.0.2.10:30080 rr 300": {"10.244.0.2:8080 w=1"},
			"TCP/[fd00::10]:80 sh 0":      {"[fd01::2]:8080 w=1"},
			"UDP/10.96.0.53:53 rr 0":      {"10.244.1.5:53 w=1"},
		},
		Addrs: []string{"10.96.0.10", "10.96.0.53", "203.0.113.7", "203.0.113.9", "fd00::10"},
		IPSets: map[string][]string{
			"NSP-CLUSTER-IP":             {"10.96.0.10,tcp:80", "10.96.0.53,udp:53"},
			"NSP-CLUSTER-IP-6":           {"fd00::10,tcp:80"},
			"NSP-LOOP-BACK":              {"10.244.0.2,tcp:8080,10.244.0.2"},
			"NSP-LOOP-BACK-6":            {"fd01::2,tcp:8080,fd01::2"},
			"NSP-EXTERNAL-IP-LOCAL":      {"203.0.113.7,tcp:80"},
			"NSP-LOAD-BALANCER":          {"203.0.113.9,tcp:80"},
			"NSP-LOAD-BALANCER-LOCAL":    {"203.0.113.9,tcp:80"},
			"NSP-LOAD-BALANCER-FW":       {"203.0.113.9,tcp:80"},
			"NSP-LOAD-BALANCER-SRC-CIDR": {"203.0.113.9,tcp:80,198.51.100.0/24"},
			"NSP-NODE-PORT-TCP":          {"30080"},
			"NSP-NODE-PORT-LOCAL-TCP":    {"30080"},
			"NSP-HEALTH-CHECK-NODE-PORT": {"31000"},
		},
		Sysctls: map[string]string{"kernel/osrelease": "6.1.0", "net/ipv4/vs/conntrack": "1", "net/ipv4/vs/expire_nodest_conn": "1",
			"net/ipv4/vs/expire_quiescent_template": "1", "net/ipv4/ip_forward": "1", "net/ipv6/conf/all/forwarding": "1"},
		CT: []string{"UDP dst=10.96.0.53:53 replysrc=invalid IP"},
	}
}

var webEPs = []ss.Endpoint{ep("10.244.0.2", 8080, true), ep("10.244.1.2", 8080, false)}
var dnsEPs = []ss.Endpoint{ep("10.244.1.5", 53, false)}

func TestSyncFromEmpty(t *testing.T) {
	f := NewFake()
	f.S.Sysctls["kernel/osrelease"] = "6.1.0"
	now := time.Unix(1000, 0)
	p := newPlane(f, &now)
	if err := p.Sync(context.Background(), state(webEPs, dnsEPs), nil, false); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fullWant(), snapshot(f), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("kernel state (-want +got):\n%s", d)
	}
	if d := cmp.Diff(jumps, f.S.Jumps[v1.IPv4Protocol]); d != "" {
		t.Errorf("jumps (-want +got):\n%s", d)
	}
	// A second sync with nothing changed writes nothing.
	calls := f.Calls
	if err := p.Sync(context.Background(), state(webEPs, dnsEPs), sets.New(web, dns), false); err != nil {
		t.Fatal(err)
	}
	if err := p.Sync(context.Background(), state(webEPs, dnsEPs), nil, true); err != nil {
		t.Fatal(err)
	}
	if f.Calls != calls {
		t.Errorf("unchanged resync made %d kernel writes, want 0", f.Calls-calls)
	}
}

func TestIncremental(t *testing.T) {
	tests := []struct {
		name     string
		st       *ss.State
		changed  sets.Set[ss.Key]
		conns    map[string]int // real server "ip:port" of web's ClusterIP VS -> active conns before the sync
		advance  time.Duration  // then, before Reap
		idle     bool           // connections end before Reap
		want     func(s *snap)
		wantTerm map[VSKey][]netip.AddrPort
	}{{
		name:    "TCP endpoint with connections drains at weight 0",
		st:      state(webEPs[:1], dnsEPs),
		changed: sets.New(web),
		conns:   map[string]int{"10.244.1.2:8080": 2},
		want: func(s *snap) {
			s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=0"}
		},
		wantTerm: map[VSKey][]netip.AddrPort{{v1.ProtocolTCP, a("10.96.0.10"), 80}: {netip.MustParseAddrPort("10.244.1.2:8080")}},
	}, {
		name:    "drained endpoint is deleted once idle",
		st:      state(webEPs[:1], dnsEPs),
		changed: sets.New(web),
		conns:   map[string]int{"10.244.1.2:8080": 2},
		idle:    true,
		want:    func(s *snap) { s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1"} },
	}, {
		name:    "drained endpoint is deleted at the grace period bound",
		st:      state(webEPs[:1], dnsEPs),
		changed: sets.New(web),
		conns:   map[string]int{"10.244.1.2:8080": 2},
		advance: 2 * time.Minute,
		want:    func(s *snap) { s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1"} },
	}, {
		name:    "idle TCP endpoint goes at once",
		st:      state(webEPs[:1], dnsEPs),
		changed: sets.New(web),
		want:    func(s *snap) { s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1"} },
	}, {
		name:    "UDP endpoint goes at once with its conntrack entries",
		st:      state(webEPs, []ss.Endpoint{ep("10.244.1.6", 53, false)}),
		changed: sets.New(dns),
		want: func(s *snap) {
			s.VS["UDP/10.96.0.53:53 rr 0"] = []string{"10.244.1.6:53 w=1"}
			s.CT = append(s.CT, "UDP dst=10.96.0.53:53 replysrc=10.244.1.5")
		},
	}, {
		name: "deleted Service: virtual servers, addresses and set entries go",
		st: func() *ss.State {
			st := state(webEPs, dnsEPs)
			delete(st.Services, dns)
			delete(st.Endpoints, dns)
			return st
		}(),
		changed: sets.New(dns),
		want: func(s *snap) {
			delete(s.VS, "UDP/10.96.0.53:53 rr 0")
			s.Addrs = []string{"10.96.0.10", "203.0.113.7", "203.0.113.9", "fd00::10"}
			s.IPSets["NSP-CLUSTER-IP"] = []string{"10.96.0.10,tcp:80"}
		},
	}, {
		name: "affinity off and scheduler annotation: virtual server updated in place",
		st: func() *ss.State {
			st := state(webEPs, dnsEPs)
			st.Services[web].StickyMaxAgeSeconds = 0
			st.Services[web].ExternalIPs, st.Services[web].LoadBalancerIPs, st.Services[web].NodePort = nil, nil, 0
			st.Services[web].Scheduler = "lc"
			return st
		}(),
		changed: sets.New(web),
		want: func(s *snap) {
			s.VS = map[string][]string{
				"TCP/10.96.0.10:80 lc 0": {"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=1"},
				"TCP/[fd00::10]:80 sh 0": {"[fd01::2]:8080 w=1"},
				"UDP/10.96.0.53:53 rr 0": {"10.244.1.5:53 w=1"},
			}
			s.Addrs = []string{"10.96.0.10", "10.96.0.53", "fd00::10"}
			for _, n := range []string{"NSP-EXTERNAL-IP-LOCAL", "NSP-LOAD-BALANCER", "NSP-LOAD-BALANCER-LOCAL", "NSP-LOAD-BALANCER-FW",
				"NSP-LOAD-BALANCER-SRC-CIDR", "NSP-NODE-PORT-TCP", "NSP-NODE-PORT-LOCAL-TCP"} {
				delete(s.IPSets, n)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFake()
			f.S.Sysctls["kernel/osrelease"] = "6.1.0"
			now := time.Unix(1000, 0)
			p := newPlane(f, &now)
			ctx := context.Background()
			if err := p.Sync(ctx, state(webEPs, dnsEPs), nil, true); err != nil {
				t.Fatal(err)
			}
			vk := VSKey{v1.ProtocolTCP, a("10.96.0.10"), 80}
			for ap, n := range tt.conns {
				f.SetConns(vk, netip.MustParseAddrPort(ap), n, 0)
			}
			if err := p.Sync(ctx, tt.st, tt.changed, false); err != nil {
				t.Fatal(err)
			}
			now = now.Add(tt.advance)
			if tt.idle {
				for ap := range tt.conns {
					f.SetConns(vk, netip.MustParseAddrPort(ap), 0, 0)
				}
			}
			if err := p.Reap(); err != nil {
				t.Fatal(err)
			}
			want := fullWant()
			tt.want(&want)
			if d := cmp.Diff(want, snapshot(f), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("kernel state (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tt.wantTerm, p.Terminating(), cmpopts.EquateEmpty(), cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y }),
				cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); d != "" {
				t.Errorf("terminating (-want +got):\n%s", d)
			}
		})
	}
}

// TestRestartAdopts: a new process finds the kernel as the last one left it
// plus drift; it corrects only the drift and never flushes.
func TestRestartAdopts(t *testing.T) {
	f := NewFake()
	f.S.Sysctls["kernel/osrelease"] = "6.1.0"
	now := time.Unix(1000, 0)
	if err := newPlane(f, &now).Sync(context.Background(), state(webEPs, dnsEPs), nil, true); err != nil {
		t.Fatal(err)
	}
	// Drift while no proxy ran: a stale VS on our dummy address, a VS that
	// is not ours, one in excludeCIDRs, a stray real server, a missing one.
	stale := VirtualServer{VSKey: VSKey{v1.ProtocolTCP, a("10.96.0.99"), 80}, Scheduler: "rr"}
	foreign := VirtualServer{VSKey: VSKey{v1.ProtocolTCP, a("172.16.0.1"), 80}, Scheduler: "wrr"}
	mustOK(t, f.AddLinkAddr(DummyName, stale.Addr))
	mustOK(t, f.AddVirtualServer(stale))
	mustOK(t, f.AddVirtualServer(foreign))
	vk := VSKey{v1.ProtocolTCP, a("10.96.0.10"), 80}
	mustOK(t, f.AddRealServer(vk, RealServer{Addr: a("10.244.9.9"), Port: 8080, Weight: 1}))
	f.SetConns(vk, netip.MustParseAddrPort("10.244.9.9:8080"), 1, 0)
	mustOK(t, f.DeleteRealServer(vk, RealServer{Addr: a("10.244.1.2"), Port: 8080}))
	before := f.Calls

	p := newPlane(f, &now)
	if err := p.Sync(context.Background(), state(webEPs, dnsEPs), nil, false); err != nil {
		t.Fatal(err)
	}
	want := fullWant()
	want.VS["TCP/172.16.0.1:80 wrr 0"] = []string{}
	want.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=1", "10.244.9.9:8080 w=0"}
	if d := cmp.Diff(want, snapshot(f), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("kernel state (-want +got):\n%s", d)
	}
	// add real, drain stray, delete stale VS, unbind its address; the
	// iptables rules were unchanged.
	if got := f.Calls - before; got != 4 {
		t.Errorf("restart made %d kernel writes, want 4 (only the drift)", got)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestIPTablesRulesConstant(t *testing.T) {
	c := []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}
	r := iptablesRules(v1.IPv4Protocol, c, false)
	for _, want := range []string{
		"-A NSP-SERVICES -m set --match-set NSP-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j NSP-MARK-MASQ",
		"-A NSP-NODE-PORT -p tcp -m set --match-set NSP-NODE-PORT-LOCAL-TCP dst -j RETURN",
		"-A NSP-INPUT -m set --match-set NSP-LOAD-BALANCER-FW dst,dst -m set ! --match-set NSP-LOAD-BALANCER-SRC-CIDR dst,dst,src -j DROP",
	} {
		if !contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
	if all := iptablesRules(v1.IPv4Protocol, c, true); !contains(all, "-A NSP-SERVICES -m set --match-set NSP-CLUSTER-IP dst,dst -j NSP-MARK-MASQ") {
		t.Errorf("masqueradeAll rule missing:\n%s", all)
	}
	if r6 := iptablesRules(v1.IPv6Protocol, append(c, netip.MustParsePrefix("fd01::/64")), false); contains(r6, "10.244.0.0/16") || !contains(r6, "NSP-CLUSTER-IP-6") {
		t.Errorf("IPv6 rules use IPv4 data:\n%s", r6)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestCleanup(t *testing.T) {
	f := NewFake()
	f.S.Sysctls["kernel/osrelease"] = "6.1.0"
	now := time.Unix(1000, 0)
	mustOK(t, newPlane(f, &now).Sync(context.Background(), state(webEPs, dnsEPs), nil, true))
	foreign := VirtualServer{VSKey: VSKey{v1.ProtocolTCP, a("172.16.0.1"), 80}, Scheduler: "wrr"}
	mustOK(t, f.AddVirtualServer(foreign))
	mustOK(t, Cleanup(f, []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}, []netip.Addr{a("192.0.2.10")}))
	want := snap{VS: map[string][]string{"TCP/172.16.0.1:80 wrr 0": {}}, Sysctls: fullWant().Sysctls, CT: fullWant().CT}
	if d := cmp.Diff(want, snapshot(f), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("after cleanup (-want +got):\n%s", d)
	}
	if len(f.S.IPSets) != 0 || len(f.S.Rules) != 0 || len(f.S.Links) != 0 {
		t.Errorf("left behind: sets %v rules %v links %v", f.S.IPSets, f.S.Rules, f.S.Links)
	}
}

// opLog records the real-server reads and writes of one virtual server.
type opLog struct {
	*Fake
	vk  VSKey
	ops []string
}

func (o *opLog) RealServers(k VSKey) ([]RealServer, error) {
	if k == o.vk {
		o.ops = append(o.ops, "read")
	}
	return o.Fake.RealServers(k)
}

func (o *opLog) AddRealServers(k VSKey, rs []RealServer) error {
	if k == o.vk {
		for _, r := range rs {
			o.ops = append(o.ops, "add "+r.AddrPort().String())
		}
	}
	return o.Fake.AddRealServers(k, rs)
}

func (o *opLog) UpdateRealServer(k VSKey, r RealServer) error {
	if k == o.vk {
		o.ops = append(o.ops, fmt.Sprintf("update %s w=%d", r.AddrPort(), r.Weight))
	}
	return o.Fake.UpdateRealServer(k, r)
}

// TestNewRealsBeforeRead: a change adds the real servers this process did
// not program last time before it reads the kernel's, and still ends in
// the same kernel state as reading first would.
func TestNewRealsBeforeRead(t *testing.T) {
	clusterVS := VSKey{v1.ProtocolTCP, a("10.96.0.10"), 80}
	dnsVS := VSKey{v1.ProtocolUDP, a("10.96.0.53"), 53}
	more := append(append([]ss.Endpoint{}, webEPs...), ep("10.244.2.2", 8080, false))
	tests := []struct {
		name string
		vk   VSKey
		// steps are synced in turn (the first one full); ops are
		// recorded for the last.
		steps      []*ss.State
		conns      map[string]int // on clusterVS after the first step
		newProcess bool           // the last step runs in a new plane
		wantOps    []string
		want       func(s *snap)
	}{{
		name:    "new TCP endpoint: added, then the kernel read",
		vk:      clusterVS,
		steps:   []*ss.State{state(webEPs, dnsEPs), state(more, dnsEPs)},
		wantOps: []string{"add 10.244.2.2:8080", "read"},
		want: func(s *snap) {
			s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=1", "10.244.2.2:8080 w=1"}
		},
	}, {
		name:    "draining endpoint comes back: the early add fails, the read restores its weight",
		vk:      clusterVS,
		steps:   []*ss.State{state(webEPs, dnsEPs), state(webEPs[:1], dnsEPs), state(webEPs, dnsEPs)},
		conns:   map[string]int{"10.244.1.2:8080": 1},
		wantOps: []string{"add 10.244.1.2:8080", "read", "update 10.244.1.2:8080 w=1"},
		want:    func(s *snap) {},
	}, {
		name:       "a new process reads first",
		vk:         clusterVS,
		steps:      []*ss.State{state(webEPs, dnsEPs), state(more, dnsEPs)},
		newProcess: true,
		wantOps:    []string{"read", "add 10.244.2.2:8080"},
		want: func(s *snap) {
			s.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.0.2:8080 w=1", "10.244.1.2:8080 w=1", "10.244.2.2:8080 w=1"}
		},
	}, {
		name:    "UDP: read first, so a first endpoint still clears conntrack",
		vk:      dnsVS,
		steps:   []*ss.State{state(webEPs, nil), state(webEPs, dnsEPs)},
		wantOps: []string{"read", "add 10.244.1.5:53"},
		want:    func(s *snap) {},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &opLog{Fake: NewFake(), vk: tt.vk}
			o.S.Sysctls["kernel/osrelease"] = "6.1.0"
			now := time.Unix(1000, 0)
			opts := Options{Families: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol},
				ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, GracePeriod: time.Minute,
				Now: func() time.Time { return now }}
			p := New(o, opts, zap.NewNop())
			ctx := context.Background()
			for i, st := range tt.steps {
				last := i == len(tt.steps)-1
				if last {
					o.ops = nil
					if tt.newProcess {
						p = New(o, opts, zap.NewNop())
					}
				}
				if err := p.Sync(ctx, st, sets.New(web, dns), i == 0); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if i == 0 {
					for ap, n := range tt.conns {
						o.SetConns(clusterVS, netip.MustParseAddrPort(ap), n, 0)
					}
				}
			}
			if d := cmp.Diff(tt.wantOps, o.ops); d != "" {
				t.Errorf("operations on %s (-want +got):\n%s", tt.vk, d)
			}
			want := fullWant()
			tt.want(&want)
			if d := cmp.Diff(want, snapshot(o.Fake), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("kernel state (-want +got):\n%s", d)
			}
			if got := p.Terminating(); len(got) != 0 {
				t.Errorf("still terminating: %v", got)
			}
		})
	}
}
