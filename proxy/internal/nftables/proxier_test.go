package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

const testNodeIP = "192.0.2.10"

type fakeConntrack struct{ calls [][]ConntrackFilter }

func (f *fakeConntrack) DeleteUDP(_ v1.IPFamily, filters []ConntrackFilter) error {
	f.calls = append(f.calls, filters)
	return nil
}

func newTestProxier(t testing.TB, fake *knftables.Fake, mod func(*Config)) (*Proxier, *fakeConntrack) {
	t.Helper()
	ct := &fakeConntrack{}
	cfg := Config{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		NFTables:     map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: fake},
		Conntrack:    ct,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(zap.NewNop(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, ct
}

func newFake() *knftables.Fake { return knftables.NewFake(knftables.IPv4Family, DefaultTableName) }

func key(ns, name, port string, proto v1.Protocol) servicestate.Key {
	return servicestate.Key{Name: servicestate.ServicePortName{Namespace: ns, Name: name, Port: port, Protocol: proto}, Family: v1.IPv4Protocol}
}

func ep(ip string, port int32, local bool) servicestate.Endpoint {
	return servicestate.Endpoint{IP: netip.MustParseAddr(ip), Port: port, Ready: true, Serving: true, IsLocal: local}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func newState() *servicestate.State {
	return &servicestate.State{
		Services:       map[servicestate.Key]*servicestate.ServicePort{},
		Endpoints:      map[servicestate.Key][]servicestate.Endpoint{},
		LocalEndpoints: map[servicestate.Key][]servicestate.Endpoint{},
		NodeIPs:        addrs(testNodeIP),
	}
}

// put adds or replaces one Service port and its endpoints.
func put(st *servicestate.State, k servicestate.Key, sp servicestate.ServicePort, eps ...servicestate.Endpoint) servicestate.Key {
	sp.Name, sp.Family = k.Name, k.Family
	st.Services[k] = &sp
	st.Endpoints[k] = eps
	var local []servicestate.Endpoint
	for _, e := range eps {
		if e.IsLocal {
			local = append(local, e)
		}
	}
	st.LocalEndpoints[k] = local
	return k
}

func remove(st *servicestate.State, k servicestate.Key) {
	delete(st.Services, k)
	delete(st.Endpoints, k)
	delete(st.LocalEndpoints, k)
}

func mustSync(t testing.TB, p *Proxier, st *servicestate.State, full bool, changed ...servicestate.Key) {
	t.Helper()
	if err := p.Sync(context.Background(), st, sets.New(changed...), full); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

func tcp(src, dst string, port int) packet {
	return packet{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: "tcp", dport: port}
}

func udp(src, dst string, port int) packet {
	p := tcp(src, dst, port)
	p.proto = "udp"
	return p
}

func fromHost(p packet) packet {
	p.local = true
	return p
}

func TestTraceServiceTypes(t *testing.T) {
	dns := key("kube-system", "kube-dns", "dns", v1.ProtocolUDP)
	web := key("default", "web", "http", v1.ProtocolTCP)
	type probe struct {
		name string
		pkt  packet
		want []outcome
	}
	tests := []struct {
		name   string
		cfg    func(*Config)
		state  func(st *servicestate.State)
		probes []probe
	}{{
		name: "ClusterIP",
		state: func(st *servicestate.State) {
			put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53},
				ep("10.244.0.7", 53, true), ep("10.244.0.8", 53, false))
		},
		probes: []probe{
			{"pod to ClusterIP: either endpoint, source kept",
				udp("10.244.0.5", "10.96.0.10", 53), outcomes("accept dnat 10.244.0.7:53", "accept dnat 10.244.0.8:53")},
			{"host to ClusterIP: masqueraded (source outside cluster CIDR)",
				fromHost(udp(testNodeIP, "10.96.0.10", 53)), outcomes("accept dnat 10.244.0.7:53 masq", "accept dnat 10.244.0.8:53 masq")},
			{"endpoint to its own Service: hairpin masquerade only when sent to itself",
				udp("10.244.0.7", "10.96.0.10", 53), outcomes("accept dnat 10.244.0.7:53 masq", "accept dnat 10.244.0.8:53")},
			{"ClusterIP on a port no Service has: rejected",
				tcp("10.244.0.5", "10.96.0.10", 54), outcomes("reject")},
			{"other traffic untouched",
				tcp("10.244.0.5", "10.244.0.9", 80), outcomes("accept")},
		},
	}, {
		name: "ClusterIP without endpoints rejects",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080})
		},
		probes: []probe{
			{"ClusterIP", tcp("10.244.0.5", "10.96.1.1", 80), outcomes("reject")},
			{"NodePort", tcp("203.0.113.5", testNodeIP, 30080), outcomes("reject")},
		},
	}, {
		name: "masqueradeAll",
		cfg:  func(c *Config) { c.MasqueradeAll = true },
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80}, ep("10.244.0.8", 8080, false))
		},
		probes: []probe{
			{"pod to ClusterIP masqueraded", tcp("10.244.0.5", "10.96.1.1", 80), outcomes("accept dnat 10.244.0.8:8080 masq")},
		},
	}, {
		name: "NodePort, externalTrafficPolicy Cluster",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080},
				ep("10.244.0.8", 8080, false))
		},
		probes: []probe{
			{"outside client to node port: masqueraded", tcp("203.0.113.5", testNodeIP, 30080), outcomes("accept dnat 10.244.0.8:8080 masq")},
			{"host to its own node port", fromHost(tcp(testNodeIP, testNodeIP, 30080)), outcomes("accept dnat 10.244.0.8:8080 masq")},
			{"node port on an address not in nodePortAddresses", tcp("203.0.113.5", "192.0.2.99", 30080), outcomes("accept")},
			{"wrong protocol", udp("203.0.113.5", testNodeIP, 30080), outcomes("accept")},
		},
	}, {
		name: "NodePort and LoadBalancer, externalTrafficPolicy Local",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080,
				LoadBalancerIPs: addrs("198.51.100.1"), ExternalPolicyLocal: true, HealthCheckNodePort: 32000},
				ep("10.244.0.7", 8080, true), ep("10.244.1.8", 8080, false))
		},
		probes: []probe{
			{"outside client: local endpoint only, source kept", tcp("203.0.113.5", testNodeIP, 30080), outcomes("accept dnat 10.244.0.7:8080")},
			{"LB IP: local endpoint only, source kept", tcp("203.0.113.5", "198.51.100.1", 80), outcomes("accept dnat 10.244.0.7:8080")},
			{"pod to LB IP: short-circuited to all endpoints", tcp("10.244.0.5", "198.51.100.1", 80),
				outcomes("accept dnat 10.244.0.7:8080", "accept dnat 10.244.1.8:8080")},
			{"host to node port: all endpoints, masqueraded", fromHost(tcp(testNodeIP, testNodeIP, 30080)),
				outcomes("accept dnat 10.244.0.7:8080 masq", "accept dnat 10.244.1.8:8080 masq")},
			{"ClusterIP still uses all endpoints", tcp("10.244.0.5", "10.96.1.1", 80),
				outcomes("accept dnat 10.244.0.7:8080", "accept dnat 10.244.1.8:8080")},
		},
	}, {
		name: "externalTrafficPolicy Local without local endpoints",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080,
				ExternalIPs: addrs("198.51.100.7"), ExternalPolicyLocal: true}, ep("10.244.1.8", 8080, false))
		},
		probes: []probe{
			{"outside client to node port: dropped", tcp("203.0.113.5", testNodeIP, 30080), outcomes("drop")},
			{"outside client to external IP: dropped", tcp("203.0.113.5", "198.51.100.7", 80), outcomes("drop")},
			{"pod to external IP: short-circuited", tcp("10.244.0.5", "198.51.100.7", 80), outcomes("accept dnat 10.244.1.8:8080")},
			{"ClusterIP works", tcp("10.244.0.5", "10.96.1.1", 80), outcomes("accept dnat 10.244.1.8:8080")},
		},
	}, {
		name: "external IP, Cluster policy",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80,
				ExternalIPs: addrs("198.51.100.7")}, ep("10.244.1.8", 8080, false))
		},
		probes: []probe{
			{"outside client: masqueraded", tcp("203.0.113.5", "198.51.100.7", 80), outcomes("accept dnat 10.244.1.8:8080 masq")},
			{"other port of the external IP: untouched", tcp("203.0.113.5", "198.51.100.7", 81), outcomes("accept")},
		},
	}, {
		name: "loadBalancerSourceRanges",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80,
				LoadBalancerIPs:          addrs("198.51.100.1"),
				LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
				ep("10.244.1.8", 8080, false))
		},
		probes: []probe{
			{"allowed source", tcp("203.0.113.5", "198.51.100.1", 80), outcomes("accept dnat 10.244.1.8:8080 masq")},
			{"other source dropped", tcp("192.0.2.200", "198.51.100.1", 80), outcomes("drop")},
			{"ClusterIP not filtered", tcp("192.0.2.200", "10.96.1.1", 80), outcomes("accept dnat 10.244.1.8:8080 masq")},
		},
	}, {
		name: "internalTrafficPolicy Local",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, InternalPolicyLocal: true},
				ep("10.244.0.7", 8080, true), ep("10.244.1.8", 8080, false))
			put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, InternalPolicyLocal: true},
				ep("10.244.1.9", 53, false))
		},
		probes: []probe{
			{"local endpoint only", tcp("10.244.0.5", "10.96.1.1", 80), outcomes("accept dnat 10.244.0.7:8080")},
			{"no local endpoint: dropped", udp("10.244.0.5", "10.96.0.10", 53), outcomes("drop")},
		},
	}, {
		name: "session affinity",
		state: func(st *servicestate.State) {
			put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, StickyMaxAgeSeconds: 10800},
				ep("10.244.0.7", 8080, true), ep("10.244.1.8", 8080, false))
		},
		probes: []probe{
			{"first packet: any endpoint", tcp("10.244.0.5", "10.96.1.1", 80), outcomes("accept dnat 10.244.0.7:8080", "accept dnat 10.244.1.8:8080")},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake()
			p, _ := newTestProxier(t, fake, tc.cfg)
			st := newState()
			tc.state(st)
			mustSync(t, p, st, true)
			tr := &tracer{t: t, fake: fake, localIPs: addrs(testNodeIP, "127.0.0.1")}
			for _, pr := range tc.probes {
				got := tr.trace(pr.pkt)
				if d := cmp.Diff(pr.want, got); d != "" {
					t.Errorf("%s: %v -> (-want +got):\n%s", pr.name, pr.pkt, d)
				}
			}
		})
	}
}

// TestSessionAffinityRules checks the affinity objects: a set per endpoint
// with the Service's timeout, recorded by the endpoint chain, consulted
// first by the Service chain.
func TestSessionAffinityRules(t *testing.T) {
	fake := newFake()
	p, _ := newTestProxier(t, fake, nil)
	st := newState()
	k := put(st, key("default", "web", "", v1.ProtocolTCP), servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, StickyMaxAgeSeconds: 60},
		ep("10.244.0.7", 8080, false))
	mustSync(t, p, st, true)
	want := []string{
		"ip saddr @aff-default/web/tcp/___10.244.0.7/8080/t60 goto ep-default/web/tcp/___10.244.0.7/8080",
		"goto ep-default/web/tcp/___10.244.0.7/8080",
	}
	if d := cmp.Diff(want, ruleTexts(fake, "svc-default/web/tcp/_")); d != "" {
		t.Errorf("service chain (-want +got):\n%s", d)
	}
	want = []string{
		"update @aff-default/web/tcp/___10.244.0.7/8080/t60 { ip saddr }",
		"meta l4proto tcp dnat to 10.244.0.7:8080",
	}
	if d := cmp.Diff(want, ruleTexts(fake, "ep-default/web/tcp/___10.244.0.7/8080")); d != "" {
		t.Errorf("endpoint chain (-want +got):\n%s", d)
	}
	set := fake.Table.Sets["aff-default/web/tcp/___10.244.0.7/8080/t60"]
	if set == nil || set.Timeout == nil || set.Timeout.Seconds() != 60 {
		t.Fatalf("affinity set: %+v", set)
	}
	// A new timeout is a new set; the old one goes.
	st.Services[k].StickyMaxAgeSeconds = 30
	mustSync(t, p, st, false, k)
	if fake.Table.Sets["aff-default/web/tcp/___10.244.0.7/8080/t60"] != nil || fake.Table.Sets["aff-default/web/tcp/___10.244.0.7/8080/t30"] == nil {
		t.Errorf("sets after timeout change: %v", sortedKeys(fake.Table.Sets))
	}
}

func ruleTexts(fake *knftables.Fake, chain string) []string {
	c := fake.Table.Chains[chain]
	if c == nil {
		return nil
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.Rule)
	}
	return out
}

// fullSyncDump is the ruleset a fresh proxier writes for st into an empty
// table: incremental syncs must reach exactly the same ruleset.
func fullSyncDump(t *testing.T, st *servicestate.State) string {
	t.Helper()
	fake := newFake()
	p, _ := newTestProxier(t, fake, nil)
	mustSync(t, p, st, true)
	return dump(fake)
}

// dump is the Fake's ruleset with set/map elements sorted: their order in
// the Fake is insertion order, which means nothing to the kernel.
func dump(fake *knftables.Fake) string {
	var other, elems []string
	for _, l := range strings.Split(strings.TrimSpace(fake.Dump()), "\n") {
		if strings.HasPrefix(l, "add element ") {
			elems = append(elems, l)
		} else {
			other = append(other, l)
		}
	}
	sort.Strings(elems)
	return strings.Join(append(other, elems...), "\n")
}

// txLines are the transaction's commands, for asserting what a sync touched.
func txLines(fake *knftables.Fake) []string {
	if fake.LastTransaction == nil {
		return nil
	}
	return strings.Split(strings.TrimSpace(fake.LastTransaction.String()), "\n")
}

func TestSyncTransactions(t *testing.T) {
	web := key("default", "web", "http", v1.ProtocolTCP)
	other := key("default", "other", "", v1.ProtocolTCP)
	base := func() *servicestate.State {
		st := newState()
		put(st, other, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.2.2"), Port: 443, NodePort: 30443},
			ep("10.244.0.20", 8443, true), ep("10.244.1.21", 8443, false))
		return st
	}
	tests := []struct {
		name    string
		change  func(st *servicestate.State) servicestate.Key
		wantOps int
	}{{
		name: "add a Service",
		change: func(st *servicestate.State) servicestate.Key {
			return put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80},
				ep("10.244.0.7", 8080, true), ep("10.244.1.8", 8080, false))
		},
		// chain + 2 rules, cluster-ips + service-ips elements, hairpin element.
		wantOps: 6,
	}, {
		name: "change endpoints",
		change: func(st *servicestate.State) servicestate.Key {
			return put(st, other, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.2.2"), Port: 443, NodePort: 30443},
				ep("10.244.0.20", 8443, true), ep("10.244.1.22", 8443, false))
		},
		// svc chain: flush + 2 rules (ext chain unchanged).
		wantOps: 3,
	}, {
		name: "remove a Service",
		change: func(st *servicestate.State) servicestate.Key {
			remove(st, other)
			return other
		},
		// 4 elements deleted (cluster-ips, service-ips, service-nodeports,
		// hairpin), 2 chains flushed and deleted.
		wantOps: 8,
	}, {
		name: "endpoints go away: reject instead",
		change: func(st *servicestate.State) servicestate.Key {
			return put(st, other, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.2.2"), Port: 443, NodePort: 30443})
		},
		// service-ips, service-nodeports, hairpin deleted; 2 no-endpoint
		// elements added; 2 chains flushed and deleted.
		wantOps: 9,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := newFake()
			p, _ := newTestProxier(t, fake, nil)
			st := base()
			mustSync(t, p, st, true)
			k := tc.change(st)
			mustSync(t, p, st, false, k)
			if d := cmp.Diff(fullSyncDump(t, st), dump(fake)); d != "" {
				t.Errorf("ruleset after the change differs from a fresh full sync (-want +got):\n%s", d)
			}
			lines := txLines(fake)
			if len(lines) != tc.wantOps {
				t.Errorf("transaction has %d operations, want %d:\n%s", len(lines), tc.wantOps, strings.Join(lines, "\n"))
			}
			// Only this Service's objects: every line names it.
			name := k.Name.Namespace + "/" + k.Name.Name
			ip := st.Services[k]
			for _, l := range lines {
				if strings.Contains(l, name) {
					continue
				}
				if ip != nil && strings.Contains(l, ip.ClusterIP.String()) {
					continue
				}
				if strings.Contains(l, "hairpin-connections") || strings.Contains(l, "10.96.2.2") || strings.Contains(l, "30443") {
					continue // elements of the removed Service
				}
				t.Errorf("transaction touches another object: %s", l)
			}
		})
	}
}

// TestGoldenRuleset pins the whole ruleset of one Service, so that a change
// of rule shape is a visible diff.
func TestGoldenRuleset(t *testing.T) {
	st := newState()
	put(st, key("default", "web", "http", v1.ProtocolTCP), servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080},
		ep("10.244.0.7", 8080, true), ep("10.244.1.8", 8080, false))
	got := stripHashes(fullSyncDump(t, st))
	want := strings.TrimSpace(`
add table ip nodesuite-proxy { comment "nodesuite proxy: Service rules" ; }
add chain ip nodesuite-proxy cluster-ips-check
add chain ip nodesuite-proxy ext-default/web/tcp/http
add chain ip nodesuite-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip nodesuite-proxy filter-input { type filter hook input priority 0 ; }
add chain ip nodesuite-proxy filter-output { type filter hook output priority 0 ; }
add chain ip nodesuite-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip nodesuite-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip nodesuite-proxy firewall-check
add chain ip nodesuite-proxy masquerading
add chain ip nodesuite-proxy nat-output { type nat hook output priority -100 ; }
add chain ip nodesuite-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip nodesuite-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip nodesuite-proxy nodeport-endpoints-check
add chain ip nodesuite-proxy reject-chain
add chain ip nodesuite-proxy service-endpoints-check
add chain ip nodesuite-proxy services
add chain ip nodesuite-proxy svc-default/web/tcp/http
add set ip nodesuite-proxy cluster-ips { type ipv4_addr ; }
add set ip nodesuite-proxy hairpin-connections { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; }
add set ip nodesuite-proxy nodeport-ips { type ipv4_addr ; }
add map ip nodesuite-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip nodesuite-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }
add map ip nodesuite-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip nodesuite-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip nodesuite-proxy service-nodeports { type inet_proto . inet_service : verdict ; }
add rule ip nodesuite-proxy cluster-ips-check ip daddr @cluster-ips reject
add rule ip nodesuite-proxy ext-default/web/tcp/http mark set mark or 0x4000
add rule ip nodesuite-proxy ext-default/web/tcp/http goto svc-default/web/tcp/http
add rule ip nodesuite-proxy filter-forward ct state invalid drop
add rule ip nodesuite-proxy filter-forward ct state new jump service-endpoints-check
add rule ip nodesuite-proxy filter-forward ct state new jump cluster-ips-check
add rule ip nodesuite-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip nodesuite-proxy filter-input ct state new jump service-endpoints-check
add rule ip nodesuite-proxy filter-output ct state new jump service-endpoints-check
add rule ip nodesuite-proxy filter-output ct state new jump cluster-ips-check
add rule ip nodesuite-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip nodesuite-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip nodesuite-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip nodesuite-proxy masquerading mark and 0x4000 != 0 mark set mark xor 0x4000 masquerade fully-random
add rule ip nodesuite-proxy masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random
add rule ip nodesuite-proxy nat-output jump services
add rule ip nodesuite-proxy nat-postrouting jump masquerading
add rule ip nodesuite-proxy nat-prerouting jump services
add rule ip nodesuite-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip nodesuite-proxy reject-chain meta l4proto tcp reject with tcp reset
add rule ip nodesuite-proxy reject-chain reject
add rule ip nodesuite-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip nodesuite-proxy services ip daddr @cluster-ips ip saddr != { 10.244.0.0/16 } mark set mark or 0x4000
add rule ip nodesuite-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip nodesuite-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add rule ip nodesuite-proxy svc-default/web/tcp/http meta l4proto tcp numgen random mod 2 == 0 dnat to 10.244.0.7:8080
add rule ip nodesuite-proxy svc-default/web/tcp/http meta l4proto tcp dnat to 10.244.1.8:8080
add element ip nodesuite-proxy cluster-ips { 10.96.1.1 }
add element ip nodesuite-proxy hairpin-connections { 10.244.0.7 . 10.244.0.7 . tcp . 8080 }
add element ip nodesuite-proxy nodeport-ips { 192.0.2.10 }
add element ip nodesuite-proxy service-ips { 10.96.1.1 . tcp . 80 : goto svc-default/web/tcp/http }
add element ip nodesuite-proxy service-nodeports { tcp . 30080 : goto ext-default/web/tcp/http }
`)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ruleset (-want +got):\n%s", d)
	}
}

// stripHashes drops the chain-hash comments, which change with any rule.
func stripHashes(dump string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(dump), "\n") {
		if i := strings.Index(l, ` comment "`+hashPrefix); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestRestartAdoption(t *testing.T) {
	web := key("default", "web", "http", v1.ProtocolTCP)
	dns := key("kube-system", "kube-dns", "dns", v1.ProtocolUDP)
	st := newState()
	put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, StickyMaxAgeSeconds: 100},
		ep("10.244.0.7", 8080, true))
	put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53},
		ep("10.244.0.8", 53, true), ep("10.244.1.9", 53, false))
	fake := newFake()
	p1, _ := newTestProxier(t, fake, nil)
	mustSync(t, p1, st, true)
	before := dump(fake)
	lastTx := fake.LastTransaction

	t.Run("identical state: no transaction", func(t *testing.T) {
		p2, ct := newTestProxier(t, fake, nil)
		mustSync(t, p2, st, true)
		if fake.LastTransaction != lastTx {
			t.Errorf("restart ran a transaction:\n%s", fake.LastTransaction)
		}
		if d := cmp.Diff(before, dump(fake)); d != "" {
			t.Errorf("ruleset changed (-want +got):\n%s", d)
		}
		if len(ct.calls) != 0 {
			t.Errorf("restart cleared conntrack: %v", ct.calls)
		}
	})
	t.Run("one Service changed while down: only its objects", func(t *testing.T) {
		put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53},
			ep("10.244.0.8", 53, true))
		p3, _ := newTestProxier(t, fake, nil)
		mustSync(t, p3, st, true)
		want := []string{
			"flush chain ip nodesuite-proxy svc-kube-system/kube-dns/udp/dns",
			"add rule ip nodesuite-proxy svc-kube-system/kube-dns/udp/dns meta l4proto udp dnat to 10.244.0.8:53",
		}
		if d := cmp.Diff(strings.Join(want, "\n"), stripHashes(strings.Join(txLines(fake), "\n"))); d != "" {
			t.Errorf("transaction (-want +got):\n%s", d)
		}
		if d := cmp.Diff(fullSyncDump(t, st), dump(fake)); d != "" {
			t.Errorf("ruleset differs from a fresh full sync (-want +got):\n%s", d)
		}
	})
	t.Run("leftovers of a removed Service are deleted", func(t *testing.T) {
		remove(st, web)
		p4, _ := newTestProxier(t, fake, nil)
		mustSync(t, p4, st, true)
		if d := cmp.Diff(fullSyncDump(t, st), dump(fake)); d != "" {
			t.Errorf("ruleset differs from a fresh full sync (-want +got):\n%s", d)
		}
	})
}

func TestConntrackCleanup(t *testing.T) {
	dns := key("kube-system", "kube-dns", "dns", v1.ProtocolUDP)
	web := key("default", "web", "http", v1.ProtocolTCP)
	fake := newFake()
	p, ct := newTestProxier(t, fake, nil)
	st := newState()
	put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, NodePort: 30053},
		ep("10.244.0.8", 53, true), ep("10.244.1.9", 53, false))
	put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80}, ep("10.244.0.7", 8080, true))
	mustSync(t, p, st, true)

	steps := []struct {
		name   string
		change func() servicestate.Key
		want   [][]ConntrackFilter
	}{{
		name: "UDP endpoint removed: its flows cleared",
		change: func() servicestate.Key {
			return put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53, NodePort: 30053}, ep("10.244.0.8", 53, true))
		},
		want: [][]ConntrackFilter{{
			{OrigDstIP: netip.MustParseAddr("10.96.0.10"), OrigDstPort: 53, ReplySrcIP: netip.MustParseAddr("10.244.1.9")},
			{OrigDstPort: 30053, ReplySrcIP: netip.MustParseAddr("10.244.1.9")},
		}},
	}, {
		name: "TCP change: nothing cleared",
		change: func() servicestate.Key {
			return put(st, web, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80})
		},
	}, {
		name: "UDP Service loses all endpoints, then gets one: reject entries cleared",
		change: func() servicestate.Key {
			put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53})
			mustSync(t, p, st, false, dns)
			ct.calls = nil
			return put(st, dns, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 53}, ep("10.244.1.10", 53, false))
		},
		want: [][]ConntrackFilter{{{OrigDstIP: netip.MustParseAddr("10.96.0.10"), OrigDstPort: 53}}},
	}, {
		name: "UDP Service removed",
		change: func() servicestate.Key {
			remove(st, dns)
			return dns
		},
		want: [][]ConntrackFilter{{{OrigDstIP: netip.MustParseAddr("10.96.0.10"), OrigDstPort: 53}}},
	}}
	for _, s := range steps {
		ct.calls = nil
		k := s.change()
		mustSync(t, p, st, false, k)
		if d := cmp.Diff(s.want, ct.calls, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
			t.Errorf("%s: conntrack deletes (-want +got):\n%s", s.name, d)
		}
	}
}

func TestNewConfigErrors(t *testing.T) {
	bad := -1
	tests := []struct {
		name string
		cfg  Config
	}{
		{"table name", Config{TableName: "no spaces"}},
		{"family", Config{Families: []v1.IPFamily{"IPv5"}}},
		{"masquerade bit", Config{MasqueradeBit: &bad}},
	}
	for _, tc := range tests {
		tc.cfg.NFTables = map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: newFake()}
		if _, err := New(zap.NewNop(), tc.cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", tc.name, err)
		}
	}
}

func TestDualStack(t *testing.T) {
	f4 := newFake()
	f6 := knftables.NewFake(knftables.IPv6Family, DefaultTableName)
	p, _ := newTestProxier(t, f4, func(c *Config) {
		c.Families = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
		c.ClusterCIDRs = append(c.ClusterCIDRs, netip.MustParsePrefix("fd00:10:244::/56"))
		c.NFTables[v1.IPv6Protocol] = f6
	})
	st := newState()
	st.NodeIPs = addrs(testNodeIP, "2001:db8::10")
	k4 := put(st, key("default", "web", "http", v1.ProtocolTCP), servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080},
		ep("10.244.0.7", 8080, true))
	k6 := k4
	k6.Family = v1.IPv6Protocol
	put(st, k6, servicestate.ServicePort{ClusterIP: netip.MustParseAddr("fd00:10:96::1"), Port: 80, NodePort: 30080},
		ep("fd00:10:244::7", 8080, true), ep("fd00:10:244:1::8", 8080, false))
	mustSync(t, p, st, true)

	tr6 := &tracer{t: t, fake: f6, localIPs: addrs("2001:db8::10", "::1")}
	probes := []struct {
		pkt  packet
		want []outcome
	}{
		{tcp("fd00:10:244::5", "fd00:10:96::1", 80), outcomes("accept dnat [fd00:10:244::7]:8080", "accept dnat [fd00:10:244:1::8]:8080")},
		{tcp("2001:db8::99", "2001:db8::10", 30080), outcomes("accept dnat [fd00:10:244::7]:8080 masq", "accept dnat [fd00:10:244:1::8]:8080 masq")},
		{tcp("fd00:10:244::5", "fd00:10:96::1", 81), outcomes("reject")},
	}
	for _, pr := range probes {
		if d := cmp.Diff(pr.want, tr6.trace(pr.pkt)); d != "" {
			t.Errorf("%v (-want +got):\n%s", pr.pkt, d)
		}
	}
	tr4 := &tracer{t: t, fake: f4, localIPs: addrs(testNodeIP)}
	if d := cmp.Diff(outcomes("accept dnat 10.244.0.7:8080"), tr4.trace(tcp("10.244.0.5", "10.96.1.1", 80))); d != "" {
		t.Errorf("IPv4 (-want +got):\n%s", d)
	}
	// Each table holds only its own family.
	if strings.Contains(f4.Dump(), "fd00") || strings.Contains(f6.Dump(), "10.96.1.1") {
		t.Errorf("families mixed:\n%s\n%s", f4.Dump(), f6.Dump())
	}
}

func TestCleanup(t *testing.T) {
	fake := newFake()
	p, _ := newTestProxier(t, fake, nil)
	st := newState()
	put(st, key("default", "web", "", v1.ProtocolTCP), servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80}, ep("10.244.0.7", 80, false))
	mustSync(t, p, st, true)
	nfts := map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: fake}
	for i := 0; i < 2; i++ { // the second run finds no table
		if err := Cleanup(context.Background(), "", []v1.IPFamily{v1.IPv4Protocol}, nfts); err != nil {
			t.Fatalf("Cleanup #%d: %v", i, err)
		}
		if fake.Table != nil {
			t.Fatalf("table still there after Cleanup:\n%s", fake.Dump())
		}
	}
}

// TestRestartRepairsBaseChain: a base chain found with another priority
// (e.g. written by an older version) is recreated, the rest kept.
func TestRestartRepairsBaseChain(t *testing.T) {
	fake := newFake()
	p, _ := newTestProxier(t, fake, nil)
	st := newState()
	mustSync(t, p, st, true)
	want := dump(fake)
	tx := fake.NewTransaction()
	tx.Flush(&knftables.Chain{Name: "nat-prerouting"})
	tx.Delete(&knftables.Chain{Name: "nat-prerouting"})
	tx.Add(&knftables.Chain{Name: "nat-prerouting", Type: knftables.PtrTo(knftables.NATType),
		Hook: knftables.PtrTo(knftables.PreroutingHook), Priority: knftables.PtrTo(knftables.BaseChainPriority("dstnat+5"))})
	tx.Add(&knftables.Rule{Chain: "nat-prerouting", Rule: "jump services"})
	if err := fake.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	p2, _ := newTestProxier(t, fake, nil)
	mustSync(t, p2, st, true)
	if d := cmp.Diff(want, dump(fake)); d != "" {
		t.Errorf("ruleset after repair (-want +got):\n%s", d)
	}
	if n := fake.LastTransaction.NumOperations(); n != 4 {
		t.Errorf("repair transaction has %d operations, want 4 (flush, delete, add, rule):\n%s", n, fake.LastTransaction)
	}
}

// TestLoadBalancingIsUniform weighs the random choices of the rules: each
// of N endpoints gets 1/N of new connections, with and without affinity.
func TestLoadBalancingIsUniform(t *testing.T) {
	for _, sticky := range []int32{0, 60} {
		for _, n := range []int{1, 2, 3, 7} {
			fake := newFake()
			p, _ := newTestProxier(t, fake, nil)
			st := newState()
			var eps []servicestate.Endpoint
			want := map[string]float64{}
			for i := 0; i < n; i++ {
				e := ep(fmt.Sprintf("10.244.1.%d", i+1), 8080, false)
				eps = append(eps, e)
				want[fmt.Sprintf("accept dnat 10.244.1.%d:8080", i+1)] = 1 / float64(n)
			}
			put(st, key("default", "web", "", v1.ProtocolTCP), servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, StickyMaxAgeSeconds: sticky}, eps...)
			mustSync(t, p, st, true)
			tr := &tracer{t: t, fake: fake}
			_, got := tr.traceProb(tcp("10.244.0.5", "10.96.1.1", 80))
			if d := cmp.Diff(want, got, cmpopts.EquateApprox(0, 1e-9)); d != "" {
				t.Errorf("%d endpoints, affinity %ds: probabilities (-want +got):\n%s", n, sticky, d)
			}
		}
	}
}
