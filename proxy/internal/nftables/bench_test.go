package nftables

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// benchState is n ClusterIP+NodePort Services with 10 endpoints each.
func benchState(n int) (*servicestate.State, []servicestate.Key) {
	st := newState()
	keys := make([]servicestate.Key, 0, n)
	for i := 0; i < n; i++ {
		k := key(fmt.Sprintf("ns%d", i%50), fmt.Sprintf("svc%d", i), "http", v1.ProtocolTCP)
		var eps []servicestate.Endpoint
		for j := 0; j < 10; j++ {
			ip := netip.AddrFrom4([4]byte{10, byte(128 + i>>8&0x3f), byte(i), byte(j + 1)})
			eps = append(eps, ep(ip.String(), 8080, j == 0))
		}
		put(st, k, servicestate.ServicePort{
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Port:      80,
			NodePort:  int32(30000 + i%2768),
		}, eps...)
		keys = append(keys, k)
	}
	return st, keys
}

// discardRun is a knftables.Interface whose Run only counts: it measures
// the data plane's own cost of an incremental sync, without the Fake's
// (which copies the whole table on every transaction).
type discardRun struct {
	*knftables.Fake
	ops int
}

func (d *discardRun) Run(_ context.Context, tx *knftables.Transaction) error {
	d.ops = tx.NumOperations()
	return nil
}

// benchNFT returns the knftables.Interface a benchmark mode writes to:
// "fake" is knftables.Fake (its element lookup is linear, so it is only run
// at 1,000 Services), "tx-only" builds and counts the transaction without
// applying it (the data plane's own cost), "nft" is real nftables in a
// network namespace (root only).
type benchTarget struct {
	nft   knftables.Interface
	ops   func() int
	inNS  func(f func() error) error
	reset func()
}

var benchSizes = []int{1000, 10000}

func benchTargets(b *testing.B, mode string, n int) *benchTarget {
	switch mode {
	case "fake":
		if n > 1000 {
			b.Skip("knftables.Fake is quadratic in elements: 10,000 Services take minutes per sync")
		}
		t := &benchTarget{inNS: func(f func() error) error { return f() }}
		t.reset = func() {
			f := newFake()
			t.nft = f
			t.ops = func() int { return f.LastTransaction.NumOperations() }
		}
		t.reset()
		return t
	case "tx-only":
		t := &benchTarget{inNS: func(f func() error) error { return f() }}
		t.reset = func() {
			d := &discardRun{Fake: newFake()}
			t.nft = d
			t.ops = func() int { return d.ops }
		}
		t.reset()
		return t
	case "nft":
		return realNFTTarget(b)
	}
	b.Fatalf("unknown mode %s", mode)
	return nil
}

// BenchmarkFullSync: a first (full) sync into an empty table; tx-ops is the
// size of the transaction.
func BenchmarkFullSync(b *testing.B) {
	for _, n := range benchSizes {
		for _, mode := range []string{"fake", "tx-only", "nft"} {
			b.Run(fmt.Sprintf("services=%d/endpoints=10/%s", n, mode), func(b *testing.B) {
				st, _ := benchState(n)
				t := benchTargets(b, mode, n)
				var ops int
				for b.Loop() {
					b.StopTimer()
					t.reset()
					var p *Proxier
					if err := t.inNS(func() error { p = newBenchProxier(b, t.nft); return nil }); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if err := t.inNS(func() error { return p.Sync(context.Background(), st, nil, true) }); err != nil {
						b.Fatal(err)
					}
					ops = t.ops()
				}
				b.ReportMetric(float64(ops), "tx-ops")
			})
		}
	}
}

func newBenchProxier(b testing.TB, nft knftables.Interface) *Proxier {
	p, _ := newTestProxier(b, nil, func(c *Config) {
		c.NFTables = map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: nft}
	})
	return p
}

// BenchmarkOneServiceChange: one Service's endpoints change, incremental
// sync over n Services.
func BenchmarkOneServiceChange(b *testing.B) {
	for _, n := range benchSizes {
		for _, mode := range []string{"fake", "tx-only", "nft"} {
			b.Run(fmt.Sprintf("services=%d/%s", n, mode), func(b *testing.B) {
				st, keys := benchState(n)
				t := benchTargets(b, mode, n)
				var p *Proxier
				if err := t.inNS(func() error {
					p = newBenchProxier(b, t.nft)
					return p.Sync(context.Background(), st, nil, true)
				}); err != nil {
					b.Fatal(err)
				}
				k := keys[n/2]
				orig := st.Endpoints[k]
				i := 0
				var ops int
				for b.Loop() {
					eps := append([]servicestate.Endpoint{}, orig...)
					if i%2 == 0 {
						eps[9].IP = netip.MustParseAddr("10.255.0.1")
					}
					i++
					put(st, k, *st.Services[k], eps...)
					if err := t.inNS(func() error { return p.Sync(context.Background(), st, sets.New(k), false) }); err != nil {
						b.Fatal(err)
					}
					ops = t.ops()
				}
				b.ReportMetric(float64(ops), "tx-ops")
			})
		}
	}
}
