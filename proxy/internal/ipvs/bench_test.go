package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// benchState: n ClusterIP Services x 10 endpoints, every tenth a NodePort.
func benchState(n int) *ss.State {
	st := &ss.State{Services: map[ss.Key]*ss.ServicePort{}, Endpoints: map[ss.Key][]ss.Endpoint{},
		LocalEndpoints: map[ss.Key][]ss.Endpoint{}, NodeIPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}
	for i := 0; i < n; i++ {
		k := ss.Key{Name: ss.ServicePortName{Namespace: "ns", Name: fmt.Sprintf("s%d", i), Port: "p", Protocol: v1.ProtocolTCP}, Family: v1.IPv4Protocol}
		sp := &ss.ServicePort{Name: k.Name, Family: v1.IPv4Protocol, ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}), Port: 80}
		if i%10 == 0 {
			sp.NodePort = int32(30000 + i%2768)
		}
		st.Services[k] = sp
		for j := 0; j < 10; j++ {
			st.Endpoints[k] = append(st.Endpoints[k], ss.Endpoint{IP: netip.AddrFrom4([4]byte{10, 244, byte(i >> 8), byte(i)}), Port: int32(8000 + j), Ready: true, Serving: true})
		}
	}
	return st
}

func BenchmarkFullSyncFakeKernel(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := benchState(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := New(NewFake(), Options{Families: []v1.IPFamily{v1.IPv4Protocol}, Now: time.Now}, zap.NewNop())
				b.StartTimer()
				if err := p.Sync(context.Background(), st, nil, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOneServiceChangeFakeKernel(b *testing.B) {
	st := benchState(10000)
	p := New(NewFake(), Options{Families: []v1.IPFamily{v1.IPv4Protocol}}, zap.NewNop())
	if err := p.Sync(context.Background(), st, nil, true); err != nil {
		b.Fatal(err)
	}
	var k ss.Key
	for k = range st.Services {
		break
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		eps := st.Endpoints[k]
		eps[0].Port = int32(9000 + i%2) // one endpoint moves
		if err := p.Sync(context.Background(), st, sets.New(k), false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReconcileFakeKernel: one background reconcile round at 10,000
// Services on an unchanged kernel. "longest-apply-ms" is the longest part
// run on the sync goroutine: how long a change can wait behind the round.
func BenchmarkReconcileFakeKernel(b *testing.B) {
	st := benchState(10000)
	p := New(NewFake(), Options{Families: []v1.IPFamily{v1.IPv4Protocol}}, zap.NewNop())
	if err := p.Sync(context.Background(), st, nil, true); err != nil {
		b.Fatal(err)
	}
	var longest time.Duration
	apply := func(f func(*ss.State) error) error {
		t0 := time.Now()
		err := f(st)
		longest = max(longest, time.Since(t0))
		return err
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := p.Reconcile(context.Background(), applyPacer(apply)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(longest.Microseconds())/1000, "longest-apply-ms")
}
