package ipvs

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

var (
	webVS = VSKey{v1.ProtocolTCP, a("10.96.0.10"), 80}
	dnsVS = VSKey{v1.ProtocolUDP, a("10.96.0.53"), 53}
)

// applyPacer is a Pacer whose Quiet returns at once and whose Apply is
// the function.
type applyPacer func(func(*ss.State) error) error

func (applyPacer) Quiet(context.Context) error           { return nil }
func (a applyPacer) Apply(f func(*ss.State) error) error { return a(f) }

// runNow is a pacer that runs each part at once with st.
func runNow(st *ss.State) ss.Pacer {
	return applyPacer(func(f func(*ss.State) error) error { return f(st) })
}

// The background reconcile puts back whatever was changed behind the
// plane's back, and leaves alone what is not its own.
func TestReconcileRepairsDrift(t *testing.T) {
	foreign := VSKey{v1.ProtocolTCP, a("10.1.1.1"), 80}
	tests := []struct {
		name  string
		drift func(f *Fake)
		want  func(s *snap) // on top of fullWant
	}{{
		name:  "real server deleted",
		drift: func(f *Fake) { delete(f.S.VirtualServers[webVS].Reals, netip.MustParseAddrPort("10.244.1.2:8080")) },
	}, {
		name: "real server added and weight changed",
		drift: func(f *Fake) {
			f.S.VirtualServers[webVS].Reals[netip.MustParseAddrPort("10.244.9.9:8080")] = RealServer{Addr: a("10.244.9.9"), Port: 8080, Weight: 1}
			r := f.S.VirtualServers[dnsVS].Reals[netip.MustParseAddrPort("10.244.1.5:53")]
			r.Weight = 5
			f.S.VirtualServers[dnsVS].Reals[netip.MustParseAddrPort("10.244.1.5:53")] = r
		},
	}, {
		name:  "virtual server deleted",
		drift: func(f *Fake) { delete(f.S.VirtualServers, webVS) },
	}, {
		name:  "scheduler changed",
		drift: func(f *Fake) { f.S.VirtualServers[dnsVS].VS.Scheduler = "wlc" },
	}, {
		name: "left-over virtual server on our address goes, someone else's stays",
		drift: func(f *Fake) {
			k := VSKey{v1.ProtocolTCP, a("10.96.0.10"), 81}
			f.S.VirtualServers[k] = &FakeVS{VS: VirtualServer{VSKey: k, Scheduler: "rr"}, Reals: map[netip.AddrPort]RealServer{}}
			f.S.VirtualServers[foreign] = &FakeVS{VS: VirtualServer{VSKey: foreign, Scheduler: "rr"}, Reals: map[netip.AddrPort]RealServer{}}
		},
		want: func(s *snap) { s.VS["TCP/10.1.1.1:80 rr 0"] = []string{} },
	}, {
		name:  "address removed and one added",
		drift: func(f *Fake) { f.S.Links[DummyName] = append(f.S.Links[DummyName][1:], a("10.96.7.7")) },
	}, {
		name: "ipset entry removed and one added",
		drift: func(f *Fake) {
			f.S.IPSetEntries["NSP-CLUSTER-IP"] = []string{"10.96.0.10,tcp:80", "10.96.7.7,tcp:80"}
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFake()
			f.S.Sysctls["kernel/osrelease"] = "6.1.0"
			now := time.Unix(1000, 0)
			p := newPlane(f, &now)
			st := state(webEPs, dnsEPs)
			if err := p.Sync(context.Background(), st, nil, true); err != nil {
				t.Fatal(err)
			}
			tc.drift(f)
			if err := p.Reconcile(context.Background(), runNow(st)); err != nil {
				t.Fatal(err)
			}
			want := fullWant()
			if tc.want != nil {
				tc.want(&want)
			}
			got := snapshot(f)
			want.CT, got.CT = nil, nil // UDP fixes clear conntrack; not compared here
			if d := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(x, y string) bool { return x < y })); d != "" {
				t.Errorf("kernel after reconcile (-want +got):\n%s", d)
			}
			// Nothing left to fix: a second round writes nothing.
			calls := f.Calls
			if err := p.Reconcile(context.Background(), runNow(st)); err != nil {
				t.Fatal(err)
			}
			if f.Calls != calls {
				t.Errorf("second reconcile made %d kernel writes, want 0", f.Calls-calls)
			}
		})
	}
}

// A change synced between a reconcile's kernel read and the apply of what
// it read must survive: the stale read would otherwise put the old real
// servers back, take the new Service's address and set entries away, or
// fail on adding what is already there.
func TestReconcileKeepsChangesMadeDuringIt(t *testing.T) {
	f := NewFake()
	f.S.Sysctls["kernel/osrelease"] = "6.1.0"
	now := time.Unix(1000, 0)
	p := newPlane(f, &now)
	ctx := context.Background()
	st := state(webEPs, dnsEPs)
	if err := p.Sync(ctx, st, nil, true); err != nil {
		t.Fatal(err)
	}
	apiName := ss.ServicePortName{Namespace: "ns", Name: "api", Port: "https", Protocol: v1.ProtocolTCP}
	api := ss.Key{Name: apiName, Family: v1.IPv4Protocol}
	// The change made after each part was read, before it is applied.
	changes := []func(st *ss.State) sets.Set[ss.Key]{
		func(st *ss.State) sets.Set[ss.Key] { // a new Service, and dns loses its endpoint
			st.Services[api] = &ss.ServicePort{Name: apiName, Family: v1.IPv4Protocol, ClusterIP: a("10.96.0.20"), Port: 443}
			st.Endpoints[api] = []ss.Endpoint{ep("10.244.3.3", 6443, false)}
			st.Endpoints[dns] = nil
			return sets.New(api, dns)
		},
		func(st *ss.State) sets.Set[ss.Key] { // web's endpoints replaced (the bench's change)
			st.Endpoints[web] = []ss.Endpoint{ep("10.250.0.1", 8080, false), webEPs[1]}
			st.LocalEndpoints[web] = nil
			return sets.New(web)
		},
	}
	parts := 0
	apply := func(fn func(*ss.State) error) error {
		if parts < len(changes) {
			if err := p.Sync(ctx, st, changes[parts](st), false); err != nil {
				t.Fatalf("sync during reconcile: %v", err)
			}
		}
		parts++
		return fn(st)
	}
	if err := p.Reconcile(ctx, applyPacer(apply)); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if parts != 2 {
		t.Fatalf("reconcile ran %d parts, want 2 (tables, one chunk of real servers)", parts)
	}
	want := fullWant()
	want.VS["TCP/10.96.0.10:80 rr 300"] = []string{"10.244.1.2:8080 w=1", "10.250.0.1:8080 w=1"}
	want.VS["TCP/10.96.0.20:443 rr 0"] = []string{"10.244.3.3:6443 w=1"}
	want.VS["UDP/10.96.0.53:53 rr 0"] = []string{}
	for _, k := range []string{"TCP/192.0.2.10:30080 rr 300", "TCP/203.0.113.7:80 rr 300", "TCP/203.0.113.9:80 rr 300"} {
		want.VS[k] = []string{} // eTP Local, and web has no local endpoint left
	}
	want.Addrs = append(want.Addrs, "10.96.0.20")
	want.IPSets["NSP-CLUSTER-IP"] = []string{"10.96.0.10,tcp:80", "10.96.0.20,tcp:443", "10.96.0.53,udp:53"}
	delete(want.IPSets, "NSP-LOOP-BACK")
	got := snapshot(f)
	want.CT, got.CT = nil, nil
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(x, y string) bool { return x < y })); d != "" {
		t.Errorf("kernel after reconcile (-want +got):\n%s", d)
	}
}
