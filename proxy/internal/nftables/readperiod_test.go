package nftables

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// listCounting counts the listings a sync makes and the transactions it runs.
type listCounting struct {
	*knftables.Fake
	lists, runs int
}

func (l *listCounting) List(ctx context.Context, objectType string) ([]string, error) {
	l.lists++
	return l.Fake.List(ctx, objectType)
}

func (l *listCounting) ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error) {
	l.lists++
	return l.Fake.ListRules(ctx, chain)
}

func (l *listCounting) ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error) {
	l.lists++
	return l.Fake.ListElements(ctx, objectType, name)
}

func (l *listCounting) Run(ctx context.Context, tx *knftables.Transaction) error {
	l.runs++
	return l.Fake.Run(ctx, tx)
}

// TestPeriodicFullSyncTrustsKernelView: the syncer's periodic full sync
// (every syncPeriod) does not list the table while the kept view is
// trusted, and still writes what changed; a failed transaction or the read
// period passing makes the next full sync list it again.
func TestPeriodicFullSyncTrustsKernelView(t *testing.T) {
	nft := &listCounting{Fake: newFake()}
	p, _ := newTestProxier(t, nil, func(c *Config) {
		c.NFTables = map[v1.IPFamily]knftables.Interface{v1.IPv4Protocol: nft}
	})
	web := key("default", "web", "http", v1.ProtocolTCP)
	st := newState()
	sp := servicestate.ServicePort{ClusterIP: netip.MustParseAddr("10.96.1.1"), Port: 80}
	put(st, web, sp, ep("10.244.0.7", 8080, false))

	type counts struct{ Lists, Runs int }
	step := func(name string, want counts) {
		t.Helper()
		before := counts{nft.lists, nft.runs}
		mustSync(t, p, st, true)
		got := counts{nft.lists - before.Lists, nft.runs - before.Runs}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s: (-want +got):\n%s", name, d)
		}
	}
	step("first full sync reads the kernel", counts{Lists: 1, Runs: 1}) // the table is absent: one listing
	// Reading a present table: chains, rules, sets, maps, then each fixed
	// set's or map's elements.
	read := 4 + len(p.planes[0].fixed)
	step("periodic full sync, nothing changed", counts{})
	put(st, web, sp, ep("10.244.0.7", 8080, false), ep("10.244.0.8", 8080, false))
	step("periodic full sync, one endpoint more", counts{Runs: 1})
	want := dump(nft.Fake)
	p.planes[0].lastRead = time.Now().Add(-kernelReadPeriod)
	step("read period passed: listed again, nothing to write", counts{Lists: read})
	if d := cmp.Diff(want, dump(nft.Fake)); d != "" {
		t.Errorf("ruleset changed by a re-read (-want +got):\n%s", d)
	}
	p.planes[0].synced = false // as after a failed transaction
	step("after a failure: listed again", counts{Lists: read})
}
