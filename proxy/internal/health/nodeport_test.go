package health

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

func freePort(t *testing.T) int32 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

func TestServiceServers(t *testing.T) {
	port := freePort(t)
	k := ss.Key{Name: ss.ServicePortName{Namespace: "ns", Name: "lb", Port: "http", Protocol: v1.ProtocolTCP}, Family: v1.IPv4Protocol}
	k6 := ss.Key{Name: k.Name, Family: v1.IPv6Protocol}
	st := &ss.State{Services: map[ss.Key]*ss.ServicePort{
		k:  {Name: k.Name, HealthCheckNodePort: port, ExternalPolicyLocal: true},
		k6: {Name: k.Name, HealthCheckNodePort: port, ExternalPolicyLocal: true}},
		LocalEndpoints: map[ss.Key][]ss.Endpoint{
			// The same Pod under two keys counts once; a not-ready
			// (serving-terminating) local endpoint does not count.
			k:  {{IP: netip.MustParseAddr("10.244.0.2"), Port: 80, Ready: true, IsLocal: true}, {IP: netip.MustParseAddr("10.244.0.2"), Port: 81, Ready: true, IsLocal: true}, {IP: netip.MustParseAddr("10.244.0.3"), Port: 80, Serving: true, Terminating: true, IsLocal: true}},
			k6: {{IP: netip.MustParseAddr("fd00::2"), Port: 80, Ready: true, IsLocal: true}}}}
	s := NewServiceServers(zap.NewNop(), "127.0.0.1")
	defer s.Close()
	get := func() (int, map[string]any) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	if err := s.Sync(st, nil, true); err != nil {
		t.Fatal(err)
	}
	code, body := get()
	want := map[string]any{"service": map[string]any{"namespace": "ns", "name": "lb"}, "localEndpoints": 2.0, "serviceProxyHealthy": true}
	if d := cmp.Diff(want, body); code != 200 || d != "" {
		t.Errorf("with a local endpoint: %d (-want +got):\n%s", code, d)
	}
	st.LocalEndpoints[k], st.LocalEndpoints[k6] = nil, nil
	if err := s.Sync(st, nil, true); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("without local endpoints: %d %v", code, body)
	}
	delete(st.Services, k)
	delete(st.Services, k6)
	if err := s.Sync(st, nil, true); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("server still answers after the Service went")
	}
}

// An incremental Sync (changed keys only) ends where a full one would.
func TestServiceServersIncremental(t *testing.T) {
	p1, p2 := freePort(t), freePort(t)
	key := func(name string) ss.Key {
		return ss.Key{Name: ss.ServicePortName{Namespace: "ns", Name: name, Port: "http", Protocol: v1.ProtocolTCP}, Family: v1.IPv4Protocol}
	}
	lb := func(name string, port int32) *ss.ServicePort {
		return &ss.ServicePort{Name: key(name).Name, HealthCheckNodePort: port, ExternalPolicyLocal: true}
	}
	local := func(ips ...string) []ss.Endpoint {
		var out []ss.Endpoint
		for _, ip := range ips {
			out = append(out, ss.Endpoint{IP: netip.MustParseAddr(ip), Port: 80, Ready: true, IsLocal: true})
		}
		return out
	}
	base := func() *ss.State {
		return &ss.State{Services: map[ss.Key]*ss.ServicePort{key("a"): lb("a", p1), key("plain"): {Name: key("plain").Name}},
			LocalEndpoints: map[ss.Key][]ss.Endpoint{key("a"): local("10.244.0.2")}}
	}
	for _, tc := range []struct {
		name   string
		change func(st *ss.State) []ss.Key
		want   map[int32]Status
	}{{
		name: "unrelated Service changes",
		change: func(st *ss.State) []ss.Key {
			st.Services[key("other")] = &ss.ServicePort{Name: key("other").Name}
			return []ss.Key{key("other")}
		},
		want: map[int32]Status{p1: {Service: types.NamespacedName{Namespace: "ns", Name: "a"}, LocalEndpoints: 1}},
	}, {
		name: "a local endpoint comes",
		change: func(st *ss.State) []ss.Key {
			st.LocalEndpoints[key("a")] = local("10.244.0.2", "10.244.0.3")
			return []ss.Key{key("a")}
		},
		want: map[int32]Status{p1: {Service: types.NamespacedName{Namespace: "ns", Name: "a"}, LocalEndpoints: 2}},
	}, {
		name: "a plain Service gets a health check node port",
		change: func(st *ss.State) []ss.Key {
			st.Services[key("plain")] = lb("plain", p2)
			return []ss.Key{key("plain")}
		},
		want: map[int32]Status{p1: {Service: types.NamespacedName{Namespace: "ns", Name: "a"}, LocalEndpoints: 1},
			p2: {Service: types.NamespacedName{Namespace: "ns", Name: "plain"}}},
	}, {
		name: "the Service goes",
		change: func(st *ss.State) []ss.Key {
			delete(st.Services, key("a"))
			delete(st.LocalEndpoints, key("a"))
			return []ss.Key{key("a")}
		},
		want: map[int32]Status{},
	}, {
		name: "eTP becomes Cluster",
		change: func(st *ss.State) []ss.Key {
			st.Services[key("a")].ExternalPolicyLocal = false
			return []ss.Key{key("a")}
		},
		want: map[int32]Status{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			st := base()
			s := NewServiceServers(zap.NewNop(), "127.0.0.1")
			defer s.Close()
			if err := s.Sync(st, nil, true); err != nil {
				t.Fatal(err)
			}
			changed := tc.change(st)
			if err := s.Sync(st, sets.New(changed...), false); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, s.Statuses()); d != "" {
				t.Errorf("after an incremental sync (-want +got):\n%s", d)
			}
			full := NewServiceServers(zap.NewNop(), "127.0.0.1")
			defer full.Close()
			s.Close()
			if err := full.Sync(st, nil, true); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(full.Statuses(), tc.want); d != "" {
				t.Errorf("a full sync disagrees (-full +incremental):\n%s", d)
			}
		})
	}
}
