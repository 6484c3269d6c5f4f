package nftables

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

type hcReply struct {
	Code int
	Body map[string]any
}

func getHealth(t *testing.T, port int32) (hcReply, error) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return hcReply{}, err
	}
	defer resp.Body.Close()
	r := hcReply{Code: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&r.Body); err != nil {
		t.Fatalf("decoding health check reply: %v", err)
	}
	return r, nil
}

// TestHealthCheckNodePort runs the real HTTP servers on loopback.
func TestHealthCheckNodePort(t *testing.T) {
	port := freePort(t)
	p, _ := newTestProxier(t, newFake(), func(c *Config) {
		c.DisableHealthCheckServer = false
		c.HealthCheckBindAddress = "127.0.0.1"
	})
	defer p.Close()
	lb := key("default", "lb", "http", v1.ProtocolTCP)
	sp := servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80, NodePort: 30080,
		LoadBalancerIPs: addrs("198.51.100.1"), ExternalPolicyLocal: true, HealthCheckNodePort: port}
	st := newState()
	put(st, lb, sp, ep("10.244.0.7", 8080, true), ep("10.244.0.8", 8080, true), ep("10.244.1.9", 8080, false))
	mustSync(t, p, st, true)

	reply := func(n int, code int) hcReply {
		return hcReply{Code: code, Body: map[string]any{
			"service":             map[string]any{"namespace": "default", "name": "lb"},
			"localEndpoints":      float64(n),
			"serviceProxyHealthy": true,
		}}
	}
	got, err := getHealth(t, port)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(reply(2, http.StatusOK), got); d != "" {
		t.Errorf("with local endpoints (-want +got):\n%s", d)
	}

	put(st, lb, sp, ep("10.244.1.9", 8080, false))
	mustSync(t, p, st, false, lb)
	got, err = getHealth(t, port)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(reply(0, http.StatusServiceUnavailable), got); d != "" {
		t.Errorf("without local endpoints (-want +got):\n%s", d)
	}

	remove(st, lb)
	mustSync(t, p, st, false, lb)
	if _, err := getHealth(t, port); err == nil {
		t.Errorf("health check port still served after the Service was removed")
	}
}
