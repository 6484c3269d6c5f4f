package app

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime/pprof"
	"sort"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/proxy/internal/health"
	"github.com/nodesuite/nodesuite/proxy/internal/ipvs"
	"github.com/nodesuite/nodesuite/proxy/internal/syncer"
)

// signalingOS is the fake kernel telling the benchmark when a real server
// arrives, so a change is timed until the kernel has it.
type signalingOS struct {
	*ipvs.Fake
	added chan netip.AddrPort
}

func (o signalingOS) AddRealServers(k ipvs.VSKey, rs []ipvs.RealServer) error {
	err := o.Fake.AddRealServers(k, rs)
	for _, r := range rs {
		select {
		case o.added <- r.AddrPort():
		default:
		}
	}
	return err
}

func benchObjects(n, eps int) ([]runtime.Object, []*discoveryv1.EndpointSlice) {
	objs := []runtime.Object{&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "bench-node"},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.10"}}}}}
	var slices []*discoveryv1.EndpointSlice
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%d", i)
		ip := fmt.Sprintf("10.96.%d.%d", i>>8, i&255)
		objs = append(objs, &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}})
		sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(v1.ProtocolTCP)}}}
		for j := 0; j < eps; j++ {
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.%d", (i*eps+j)>>8&255, (i*eps+j)&255)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}, NodeName: ptr.To("other-node")})
		}
		objs = append(objs, sl)
		slices = append(slices, sl)
	}
	return objs, slices
}

// BenchmarkOneChangeEndToEnd times one EndpointSlice change through the
// daemon's own path (informer event, syncer, IPVS plane with the health
// check servers, fake kernel) after a full sync of n Services x 10
// endpoints, from the client's write until the kernel has the new real
// server. Run with -cpu 1 to be closer to the user-mode-linux guest, and
// -cpuprofile to see where a change's time goes. reconcile=on runs the
// background reconcile all the time (SyncPeriod 1 ms).
func BenchmarkOneChangeEndToEnd(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, rec := range []bool{false, true} {
			b.Run(fmt.Sprintf("services=%d/reconcile=%t", n, rec), func(b *testing.B) { benchChange(b, n, rec) })
		}
	}
}

func benchChange(b *testing.B, n int, reconcile bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs, slices := benchObjects(n, 10)
	client := fake.NewSimpleClientset(objs...) //nolint:staticcheck // NewClientset's field tracking costs seconds at 10,000
	kernel := signalingOS{Fake: ipvs.NewFake(), added: make(chan netip.AddrPort, 1024)}
	families := []v1.IPFamily{v1.IPv4Protocol}
	plane := withHealth(ipvs.New(kernel, ipvs.Options{Families: families}, zap.NewNop()),
		health.NewServiceServers(zap.NewNop(), "127.0.0.1"), zap.NewNop())
	period := time.Hour
	if reconcile {
		period = time.Millisecond
	}
	hs := health.New(time.Hour, nil, nil)
	s, err := syncer.New(client, plane, syncer.Options{NodeName: "bench-node", Families: families,
		SyncPeriod: period, ConfigSyncPeriod: 0, Health: hs})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// The full sync is done once every Service's real servers are there.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if time.Now().After(deadline) {
			b.Fatal("full sync not done")
		}
		last := slices[n-1]
		vk := ipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: netip.MustParseAddr(fmt.Sprintf("10.96.%d.%d", (n-1)>>8, (n-1)&255)), Port: 80}
		if rs, err := kernel.RealServers(vk); err == nil && len(rs) == len(last.Endpoints) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// PROXY_CHANGE_PROFILE=file profiles the changes alone (go test's
	// -cpuprofile would include the full sync).
	if path := os.Getenv("PROXY_CHANGE_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sl := slices[(i*7919)%n].DeepCopy()
		ip := netip.AddrFrom4([4]byte{10, 250, byte(i >> 8), byte(i)})
		sl.Endpoints[0].Addresses = []string{ip.String()}
		want := netip.AddrPortFrom(ip, 8080)
		t0 := time.Now()
		upd, err := client.DiscoveryV1().EndpointSlices("bench").Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		slices[(i*7919)%n] = upd
		for got := range kernel.added {
			if got == want {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
