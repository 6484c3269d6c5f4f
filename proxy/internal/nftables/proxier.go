package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// Proxier is the nftables servicestate.DataPlane.
type Proxier struct {
	log       *zap.Logger
	cfg       Config
	planes    []*plane
	conntrack Conntrack

	mu sync.Mutex
}

var _ servicestate.DataPlane = (*Proxier)(nil)

// ErrSync is wrapped by Sync's errors from the kernel side.
var ErrSync = errors.New("nftables sync failed")

// New returns the nftables data plane. It does not touch the kernel: the
// first Sync (full=true) reads the table and corrects only what differs.
func New(log *zap.Logger, cfg Config) (*Proxier, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Proxier{log: log, cfg: cfg, conntrack: cfg.Conntrack}
	if p.conntrack == nil {
		p.conntrack = NewNetlinkConntrack()
	}
	for _, f := range cfg.Families {
		nft := cfg.NFTables[f]
		if nft == nil {
			nft, err = knftables.New(nftFamily(f), cfg.TableName)
			if err != nil {
				return nil, fmt.Errorf("nftables for %s: %w", f, err)
			}
		}
		r := newFamilyRules(f, cfg)
		p.planes = append(p.planes, &plane{
			log: log.With(zap.String("family", string(f))), family: f, nft: nft, rules: r, fixed: r.fixed(),
			frags: map[servicestate.Key]*svcState{},
		})
	}
	return p, nil
}

// Name is part of servicestate.DataPlane.
func (p *Proxier) Name() string { return "nftables" }

// Close releases nothing in the kernel: the rules stay, so connections keep
// working while the proxy restarts.
func (p *Proxier) Close() {}

// Sync is part of servicestate.DataPlane.
func (p *Proxier) Sync(ctx context.Context, desired *servicestate.State, changed sets.Set[servicestate.Key], full bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, pl := range p.planes {
		if err := pl.sync(ctx, desired, changed, full, p.conntrack); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func localEndpoints(st *servicestate.State, k servicestate.Key) []servicestate.Endpoint {
	if st.LocalEndpoints != nil {
		return st.LocalEndpoints[k]
	}
	var out []servicestate.Endpoint
	for _, ep := range st.Endpoints[k] {
		if ep.IsLocal {
			out = append(out, ep)
		}
	}
	return out
}

// plane is one family's table.
type plane struct {
	log    *zap.Logger
	family v1.IPFamily
	nft    knftables.Interface
	rules  *familyRules
	fixed  []fixedContainer

	synced   bool // the kernel view is trusted (a full sync succeeded since the last failure)
	lastRead time.Time
	frags    map[servicestate.Key]*svcState
	global   *fragment
	desired  *view
	kernel   *view
}

// kernelReadPeriod is how long a full sync trusts the kernel view it keeps
// (updated by every transaction that succeeded) instead of listing the
// table: listing 10,000 Services' rules costs nft tens of seconds of CPU,
// and a full sync comes every syncPeriod (30 s by default). kube-proxy's
// nftables mode likewise rewrites everything only hourly
// (proxyutil.FullSyncPeriod). A failed transaction, a restart, or this
// period passing makes the next full sync read the kernel again.
const kernelReadPeriod = time.Hour

// svcState is what was programmed for one Service port.
type svcState struct {
	frag *fragment
	ct   ctInfo
}

// ctInfo is what the UDP conntrack cleanup needs to know of a Service port.
type ctInfo struct {
	udp      bool
	ips      []netip.Addr
	port     uint16
	nodePort uint16
	eps      map[netip.Addr]bool
}

func (pl *plane) build(st *servicestate.State, k servicestate.Key) *svcState {
	sp := st.Services[k]
	if sp == nil || k.Family != pl.family {
		return nil
	}
	cluster := st.Endpoints[k]
	local := localEndpoints(st, k)
	s := &svcState{frag: pl.rules.servicePort(k, sp, cluster, local, st.NodeIPs)}
	s.ct = ctInfo{udp: k.Name.Protocol == v1.ProtocolUDP, port: uint16(sp.Port), nodePort: uint16(sp.NodePort), eps: map[netip.Addr]bool{}}
	if sp.ClusterIP.IsValid() {
		s.ct.ips = append(s.ct.ips, sp.ClusterIP)
	}
	s.ct.ips = append(append(s.ct.ips, sp.ExternalIPs...), sp.LoadBalancerIPs...)
	for _, eps := range [][]servicestate.Endpoint{cluster, local} {
		for _, ep := range eps {
			s.ct.eps[ep.IP] = true
		}
	}
	return s
}

func (pl *plane) sync(ctx context.Context, st *servicestate.State, changed sets.Set[servicestate.Key], full bool, ct Conntrack) error {
	full = full || !pl.synced
	old := pl.frags
	var t *touched
	firstSync := pl.kernel == nil
	if full {
		pl.frags = make(map[servicestate.Key]*svcState, len(st.Services))
		pl.desired = newView()
		pl.global = pl.rules.global(st.NodeIPs)
		pl.desired.addFragment(pl.global)
		for k := range st.Services {
			if s := pl.build(st, k); s != nil {
				pl.frags[k] = s
				pl.desired.addFragment(s.frag)
			}
		}
		if pl.kernel == nil || !pl.synced || time.Since(pl.lastRead) >= kernelReadPeriod {
			k, err := readKernel(ctx, pl.nft, pl.fixed)
			if err != nil {
				return fmt.Errorf("%w: %s: reading table: %w", ErrSync, pl.family, err)
			}
			pl.kernel, pl.lastRead = k, time.Now()
		}
		k := pl.kernel
		t = newTouched()
		for n := range pl.desired.chains {
			t.chains[n] = true
		}
		for n := range k.chainHash {
			t.chains[n] = true
		}
		for id := range pl.desired.elems {
			t.elems[id] = true
		}
		for id := range k.elems {
			t.elems[id] = true
		}
		for n := range pl.desired.sets {
			t.sets[n] = true
		}
		for n := range k.sets {
			t.sets[n] = true
		}
	} else {
		t = newTouched()
		old = map[servicestate.Key]*svcState{}
		for k := range changed {
			if k.Family != pl.family {
				continue
			}
			prev := pl.frags[k]
			old[k] = prev
			next := pl.build(st, k)
			if prev != nil {
				pl.desired.removeFragment(prev.frag)
				t.fragment(prev.frag)
			}
			if next != nil {
				pl.desired.addFragment(next.frag)
				t.fragment(next.frag)
				pl.frags[k] = next
			} else {
				delete(pl.frags, k)
			}
		}
		g := pl.rules.global(st.NodeIPs)
		pl.desired.removeFragment(pl.global)
		t.fragment(pl.global)
		pl.desired.addFragment(g)
		t.fragment(g)
		pl.global = g
	}

	tx := pl.nft.NewTransaction()
	diff(tx, pl.kernel, pl.desired, t, pl.fixed, tableComment)
	if n := tx.NumOperations(); n > 0 {
		if err := pl.nft.Run(ctx, tx); err != nil {
			// The kernel view is now unknown: the next sync reads it again.
			pl.synced = false
			return fmt.Errorf("%w: %s: %d operations: %w", ErrSync, pl.family, n, err)
		}
	}
	pl.synced = true

	if !firstSync {
		// After a restart there is nothing to compare with, and clearing
		// every UDP Service's entries would break its flows.
		pl.clearConntrack(old, changed, full, ct)
	}
	return nil
}

func (pl *plane) clearConntrack(old map[servicestate.Key]*svcState, changed sets.Set[servicestate.Key], full bool, ct Conntrack) {
	var filters []ConntrackFilter
	check := func(k servicestate.Key) {
		prev := old[k]
		if prev == nil || !prev.ct.udp {
			return
		}
		filters = append(filters, staleFilters(prev.ct, pl.frags[k])...)
	}
	if full {
		for k := range old {
			check(k)
		}
	} else {
		for k := range changed {
			if k.Family == pl.family {
				check(k)
			}
		}
	}
	if len(filters) == 0 {
		return
	}
	if err := ct.DeleteUDP(pl.family, filters); err != nil {
		pl.log.Warn("clearing stale UDP conntrack entries", zap.Error(err))
	}
}

// staleFilters selects the UDP flows a change leaves pointing nowhere:
// those NATed to a removed endpoint, and, when a Service goes from no
// endpoints to some, those its rejects left behind.
func staleFilters(prev ctInfo, next *svcState) []ConntrackFilter {
	var out []ConntrackFilter
	add := func(ips []netip.Addr, port, nodePort uint16, ep netip.Addr) {
		for _, ip := range ips {
			out = append(out, ConntrackFilter{OrigDstIP: ip, OrigDstPort: port, ReplySrcIP: ep})
		}
		if nodePort != 0 {
			out = append(out, ConntrackFilter{OrigDstPort: nodePort, ReplySrcIP: ep})
		}
	}
	if next == nil {
		add(prev.ips, prev.port, prev.nodePort, netip.Addr{})
		return out
	}
	for _, ep := range sortedAddrs(prev.eps) {
		if !next.ct.eps[ep] {
			add(prev.ips, prev.port, prev.nodePort, ep)
		}
	}
	if len(prev.eps) == 0 && len(next.ct.eps) > 0 {
		add(next.ct.ips, next.ct.port, next.ct.nodePort, netip.Addr{})
	}
	return out
}

func sortedAddrs(m map[netip.Addr]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
