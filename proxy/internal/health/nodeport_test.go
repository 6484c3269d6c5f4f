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
	if err := s.Sync(st); err != nil {
		t.Fatal(err)
	}
	code, body := get()
	want := map[string]any{"service": map[string]any{"namespace": "ns", "name": "lb"}, "localEndpoints": 2.0, "serviceProxyHealthy": true}
	if d := cmp.Diff(want, body); code != 200 || d != "" {
		t.Errorf("with a local endpoint: %d (-want +got):\n%s", code, d)
	}
	st.LocalEndpoints[k], st.LocalEndpoints[k6] = nil, nil
	if err := s.Sync(st); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 503 || body["localEndpoints"] != 0.0 {
		t.Errorf("without local endpoints: %d %v", code, body)
	}
	delete(st.Services, k)
	delete(st.Services, k6)
	if err := s.Sync(st); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
		t.Errorf("server still answers after the Service went")
	}
}
