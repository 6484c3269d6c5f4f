package servicestate

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var prefCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func svc(name string, mod func(*v1.Service)) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}}
	if mod != nil {
		mod(s)
	}
	return s
}

type ep struct {
	ip, node             string
	ready, serving, term bool
}

func slice(name, svcName string, at discoveryv1.AddressType, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: svcName}}, AddressType: at,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(v1.ProtocolTCP)}}}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip}, NodeName: ptr.To(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.term)}})
	}
	return s
}

func a(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestBuild(t *testing.T) {
	name := ServicePortName{Namespace: "ns", Name: "web", Port: "http", Protocol: v1.ProtocolTCP}
	k4 := Key{Name: name, Family: v1.IPv4Protocol}
	k6 := Key{Name: name, Family: v1.IPv6Protocol}
	cfg := Config{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol},
		HostAddresses: []netip.Addr{a("192.0.2.10"), a("127.0.0.1"), a("2001:db8::10"), a("198.51.100.1")}}
	local := Endpoint{IP: a("10.244.0.2"), Port: 8080, Ready: true, Serving: true, NodeName: "n1", IsLocal: true}
	remote := Endpoint{IP: a("10.244.1.2"), Port: 8080, Ready: true, Serving: true, NodeName: "n2"}
	remoteTerm := Endpoint{IP: a("10.244.1.3"), Port: 8080, Serving: true, Terminating: true, NodeName: "n2"}
	base := ServicePort{Name: name, Family: v1.IPv4Protocol, ClusterIP: a("10.96.0.5"), Port: 80}
	allNodeIPs := []netip.Addr{a("192.0.2.10"), a("198.51.100.1"), a("2001:db8::10")}
	tests := []struct {
		name     string
		services []*v1.Service
		slices   []*discoveryv1.EndpointSlice
		cfg      Config
		want     *State
	}{{
		name:     "ready endpoints only, not-ready and non-serving dropped",
		services: []*v1.Service{svc("web", nil)},
		slices: []*discoveryv1.EndpointSlice{slice("web-1", "web", discoveryv1.AddressTypeIPv4, 8080,
			ep{"10.244.1.2", "n2", true, true, false}, ep{"10.244.0.2", "n1", true, true, false},
			ep{"10.244.1.3", "n2", false, true, true}, ep{"10.244.1.4", "n2", false, false, false})},
		cfg: cfg,
		want: &State{Services: map[Key]*ServicePort{k4: &base},
			Endpoints: map[Key][]Endpoint{k4: {local, remote}}, LocalEndpoints: map[Key][]Endpoint{k4: {local}}, NodeIPs: allNodeIPs},
	}, {
		name:     "no ready endpoint: serving terminating ones are used",
		services: []*v1.Service{svc("web", nil)},
		slices: []*discoveryv1.EndpointSlice{slice("web-1", "web", discoveryv1.AddressTypeIPv4, 8080,
			ep{"10.244.1.3", "n2", false, true, true}, ep{"10.244.1.4", "n2", false, false, true})},
		cfg: cfg,
		want: &State{Services: map[Key]*ServicePort{k4: &base},
			Endpoints: map[Key][]Endpoint{k4: {remoteTerm}}, LocalEndpoints: map[Key][]Endpoint{k4: nil}, NodeIPs: allNodeIPs},
	}, {
		name: "dual stack, NodePort, eTP Local LoadBalancer, affinity, scheduler annotation, nodePortAddresses",
		services: []*v1.Service{svc("web", func(s *v1.Service) {
			s.Annotations = map[string]string{SchedulerAnnotation: "sh"}
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ClusterIPs = []string{"10.96.0.5", "fd00::5"}
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 31000
			s.Spec.ExternalIPs = []string{"203.0.113.7", "2001:db8:1::7"}
			s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
			s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.9"},
				{IP: "203.0.113.10", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)}}
		})},
		slices: []*discoveryv1.EndpointSlice{slice("web-1", "web", discoveryv1.AddressTypeIPv4, 8080,
			ep{"10.244.1.2", "n2", true, true, false}, ep{"10.244.0.2", "n1", true, true, false}),
			slice("web-2", "web", discoveryv1.AddressTypeIPv6, 8080, ep{"fd01::2", "n1", true, true, false})},
		cfg: func() Config { c := cfg; c.NodePortAddresses = []string{"192.0.2.0/24", "2001:db8::/64"}; return c }(),
		want: func() *State {
			v4 := ServicePort{Name: name, Family: v1.IPv4Protocol, ClusterIP: a("10.96.0.5"), Port: 80, NodePort: 30080,
				ExternalIPs: []netip.Addr{a("203.0.113.7")}, LoadBalancerIPs: []netip.Addr{a("203.0.113.9")},
				LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
				StickyMaxAgeSeconds:      10800, ExternalPolicyLocal: true, HealthCheckNodePort: 31000, Scheduler: "sh"}
			v6 := v4
			v6.Family, v6.ClusterIP, v6.ExternalIPs, v6.LoadBalancerIPs, v6.LoadBalancerSourceRanges =
				v1.IPv6Protocol, a("fd00::5"), []netip.Addr{a("2001:db8:1::7")}, nil, nil
			l6 := Endpoint{IP: a("fd01::2"), Port: 8080, Ready: true, Serving: true, NodeName: "n1", IsLocal: true}
			return &State{Services: map[Key]*ServicePort{k4: &v4, k6: &v6},
				Endpoints:      map[Key][]Endpoint{k4: {local, remote}, k6: {l6}},
				LocalEndpoints: map[Key][]Endpoint{k4: {local}, k6: {l6}},
				NodeIPs:        []netip.Addr{a("192.0.2.10"), a("2001:db8::10")}}
		}(),
	}, {
		name: "headless and ExternalName are not proxied; IPv6 family not served",
		services: []*v1.Service{svc("headless", func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
			svc("ext", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName }),
			svc("web", func(s *v1.Service) {
				s.Spec.ClusterIPs = []string{"fd00::5", "10.96.0.5"}
				s.Spec.InternalTrafficPolicy = ptr.To(v1.ServiceInternalTrafficPolicyLocal)
			})},
		cfg: Config{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol}, NodePortAddresses: []string{"primary"},
			PrimaryIPs: []netip.Addr{a("192.0.2.10")}},
		want: &State{Services: map[Key]*ServicePort{k4: func() *ServicePort { b := base; b.InternalPolicyLocal = true; return &b }()},
			Endpoints: map[Key][]Endpoint{k4: nil}, LocalEndpoints: map[Key][]Endpoint{k4: nil}, NodeIPs: []netip.Addr{a("192.0.2.10")}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Build(tt.services, tt.slices, tt.cfg)
			if d := cmp.Diff(tt.want, got, addrCmp, prefCmp, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Build (-want +got):\n%s", d)
			}
		})
	}
}

func TestPolicyEndpoints(t *testing.T) {
	name := ServicePortName{Namespace: "ns", Name: "web", Port: "http", Protocol: v1.ProtocolTCP}
	k := Key{Name: name, Family: v1.IPv4Protocol}
	s := svc("web", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeNodePort
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	})
	// Remote ready, local only serving-terminating: cluster traffic goes to
	// the remote one, eTP Local traffic to the local terminating one.
	sl := slice("web-1", "web", discoveryv1.AddressTypeIPv4, 8080,
		ep{"10.244.1.2", "n2", true, true, false}, ep{"10.244.0.2", "n1", false, true, true})
	st := Build([]*v1.Service{s}, []*discoveryv1.EndpointSlice{sl}, Config{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol}})
	ips := func(es []Endpoint) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.IP.String())
		}
		return out
	}
	if d := cmp.Diff([]string{"10.244.1.2"}, ips(st.ClusterEndpoints(k))); d != "" {
		t.Errorf("cluster (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"10.244.0.2"}, ips(st.ExternalEndpoints(k))); d != "" {
		t.Errorf("external (-want +got):\n%s", d)
	}
}

// TestEndpointDedup: an endpoint in two slices (a slice move) counts once,
// the ready copy winning, whether found by scanning (a few endpoints) or
// by the map (more than dedupScanMax).
func TestEndpointDedup(t *testing.T) {
	for _, n := range []int{3, dedupScanMax + 5} {
		var a, b []ep
		var want []Endpoint
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 244, 0, byte(i + 1)})
			// The first half is not ready in slice a and ready in slice
			// b; the rest only in a, ready.
			if i < n/2 {
				a = append(a, ep{ip.String(), "n2", false, false, false})
				b = append(b, ep{ip.String(), "n2", true, true, false})
			} else {
				a = append(a, ep{ip.String(), "n2", true, true, false})
			}
			want = append(want, Endpoint{IP: ip, Port: 8080, Ready: true, Serving: true, NodeName: "n2"})
		}
		st := Build([]*v1.Service{svc("web", nil)}, []*discoveryv1.EndpointSlice{
			slice("web-a", "web", discoveryv1.AddressTypeIPv4, 8080, a...),
			slice("web-b", "web", discoveryv1.AddressTypeIPv4, 8080, b...)}, Config{NodeName: "n1"})
		k := Key{Name: ServicePortName{Namespace: "ns", Name: "web", Port: "http", Protocol: v1.ProtocolTCP}, Family: v1.IPv4Protocol}
		if d := cmp.Diff(want, st.Endpoints[k], addrCmp); d != "" {
			t.Errorf("%d endpoints (-want +got):\n%s", n, d)
		}
	}
}

// TestAddServiceIsMerge: the full sync's AddService builds the same State
// as BuildService and Merge (the incremental path), for every case of
// TestBuild's kinds of Service.
func TestAddServiceIsMerge(t *testing.T) {
	svcs := []*v1.Service{
		svc("web", nil),
		svc("dual", func(s *v1.Service) {
			s.Spec.Type = v1.ServiceTypeLoadBalancer
			s.Spec.ClusterIPs = []string{"10.96.0.6", "fd00::6"}
			s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
			s.Spec.Ports = append(s.Spec.Ports, v1.ServicePort{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, NodePort: 30053})
			s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "203.0.113.9"}}
		}),
		svc("ext", func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName }),
		svc("none", func(s *v1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("web-1", "web", discoveryv1.AddressTypeIPv4, 8080, ep{"10.244.0.2", "n1", true, true, false}, ep{"10.244.1.2", "n2", false, true, true}),
		slice("dual-4", "dual", discoveryv1.AddressTypeIPv4, 8080, ep{"10.244.0.3", "n1", true, true, false}),
		slice("dual-6", "dual", discoveryv1.AddressTypeIPv6, 8080, ep{"fd01::3", "n2", true, true, false}),
	}
	cfg := Config{NodeName: "n1", HostAddresses: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}
	got := Build(svcs, slices, cfg)
	want := &State{Services: map[Key]*ServicePort{}, Endpoints: map[Key][]Endpoint{}, LocalEndpoints: map[Key][]Endpoint{}, NodeIPs: NodeIPs(cfg)}
	for _, s := range svcs {
		var mine []*discoveryv1.EndpointSlice
		for _, sl := range slices {
			if sl.Labels[discoveryv1.LabelServiceName] == s.Name {
				mine = append(mine, sl)
			}
		}
		want.Merge(BuildService(s, mine, cfg))
	}
	if d := cmp.Diff(want, got, addrCmp, prefCmp); d != "" {
		t.Errorf("state (-merge +AddService):\n%s", d)
	}
	if len(got.Services) != 5 {
		t.Errorf("%d service ports, want 5 (web; dual's two ports in two families)", len(got.Services))
	}
}
