package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// reconcileChunk is how many virtual servers' real servers one part of a
// background reconcile reads: applying a part blocks Sync, and reading it
// competes with Sync for the CPU, so parts stay small (a few milliseconds).
const reconcileChunk = 32

// writes records what Sync and Reap wrote to the kernel after the
// background reconcile's last read: the read is stale there, and applying
// it would undo a newer change. All its methods accept a nil receiver
// (no reconcile running: nothing to record).
type writes struct {
	everything   bool // a full Sync: every read before it is stale
	vss          map[VSKey]bool
	addr, ipsets bool
}

func (w *writes) all() {
	if w != nil {
		w.everything = true
	}
}

func (w *writes) vs(k VSKey) {
	if w != nil {
		w.vss[k] = true
	}
}

func (w *writes) addrs() {
	if w != nil {
		w.addr = true
	}
}

func (w *writes) sets() {
	if w != nil {
		w.ipsets = true
	}
}

// startRead marks the start of a kernel read: from now on, writes are
// recorded against it. Reads are one at a time (one Reconcile runs).
func (p *Plane) startRead() *writes {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written = &writes{vss: map[VSKey]bool{}}
	return p.written
}

// Reconcile is the periodic full check, done so that it never holds up a
// Sync: it reads the kernel in parts without the plane's lock (one dump of
// the virtual servers, kube-ipvs0's addresses and the ipsets; then the real
// servers of reconcileChunk virtual servers at a time), each once pace says
// the syncs are quiet, and corrects what each part read through
// pace.Apply, which runs it between Syncs (on their goroutine: the state is
// theirs). A part corrects only what no Sync wrote since it was read. The
// iptables rules, which depend on no Service, are rewritten here. Only one
// Reconcile may run at a time; a Sync must have run before.
func (p *Plane) Reconcile(ctx context.Context, pace servicestate.Pacer) error {
	defer func() {
		p.mu.Lock()
		p.written = nil
		p.mu.Unlock()
	}()
	if err := pace.Quiet(ctx); err != nil {
		return err
	}
	if err := p.ensureIPTables(); err != nil {
		return err
	}
	if err := pace.Quiet(ctx); err != nil {
		return err
	}
	w := p.startRead()
	vss, err := p.os.VirtualServers()
	if err != nil {
		return fmt.Errorf("list virtual servers: %w", err)
	}
	addrs, err := p.os.LinkAddrs(DummyName)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", DummyName, err)
	}
	entries, err := p.os.IPSetEntries(p.setNames()...)
	if err != nil {
		return fmt.Errorf("ipsets: %w", err)
	}
	// Built here, off the sync goroutine: at 10,000 Services building
	// these is most of the work of comparing.
	kernel := make(map[VSKey]VirtualServer, len(vss))
	for _, v := range vss {
		kernel[v.VSKey] = v
	}
	kernelSets := make(map[string]sets.Set[string], len(entries))
	for n, es := range entries {
		kernelSets[n] = sets.New(es...)
	}
	if err := pace.Apply(func(st *servicestate.State) error { return p.applyTables(st, w, kernel, addrs, kernelSets) }); err != nil {
		return err
	}
	keys := make([]VSKey, 0, len(vss))
	for _, v := range vss {
		keys = append(keys, v.VSKey)
	}
	sortKeys(keys)
	for len(keys) > 0 {
		if err := pace.Quiet(ctx); err != nil {
			return err
		}
		chunk := keys[:min(reconcileChunk, len(keys))]
		keys = keys[len(chunk):]
		w := p.startRead()
		reals := make(map[VSKey][]RealServer, len(chunk))
		for _, vk := range chunk {
			rs, err := p.os.RealServers(vk)
			if err != nil {
				continue // deleted since the dump; the next round sees
			}
			reals[vk] = rs
		}
		if err := pace.Apply(func(st *servicestate.State) error { return p.applyReals(st, w, reals) }); err != nil {
			return err
		}
	}
	return nil
}

func sortKeys(ks []VSKey) {
	sort.Slice(ks, func(i, j int) bool {
		a, b := ks[i], ks[j]
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c < 0
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
}

func (p *Plane) setNames() []string {
	var names []string
	for _, f := range p.opts.Families {
		for _, s := range ipsetsFor(f) {
			names = append(names, s.Name)
		}
	}
	return names
}

func (p *Plane) ensureIPTables() error {
	p.iptMu.Lock()
	defer p.iptMu.Unlock()
	var errs []error
	for _, f := range p.opts.Families {
		if err := p.os.EnsureIPTables(f, jumps, iptablesRules(f, p.opts.ClusterCIDRs, p.opts.MasqueradeAll)); err != nil {
			errs = append(errs, fmt.Errorf("iptables %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}

// desiredOf is vk's desired virtual server, from the Service port owning it.
func (p *Plane) desiredOf(st *servicestate.State, vk VSKey) (desiredVS, bool) {
	k, ok := p.ownerOf[vk]
	if !ok {
		return desiredVS{}, false
	}
	for _, d := range p.virtualServers(st, k) {
		if d.VS.VSKey == vk {
			return d, true
		}
	}
	return desiredVS{}, false
}

// applyTables corrects the virtual servers (missing, changed, left over),
// kube-ipvs0's addresses and the ipsets from one read of each.
func (p *Plane) applyTables(st *servicestate.State, w *writes, kernel map[VSKey]VirtualServer, addrs []netip.Addr, entries map[string]sets.Set[string]) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.everything || !p.initialized {
		return nil // a full Sync ran since the read: it did all this
	}
	var errs []error
	// Virtual servers someone removed or changed: ours again, with their
	// real servers.
	for vk := range p.ownerOf {
		kv, ok := kernel[vk]
		if w.vss[vk] || (ok && p.vs[vk] == kv) {
			continue
		}
		d, want := p.desiredOf(st, vk)
		if !want {
			continue
		}
		if !ok {
			delete(p.vs, vk)
		} else {
			p.vs[vk] = kv
		}
		errs = append(errs, p.ensureVS(d))
	}
	// Our addresses: kube-ipvs0's, the wanted ones and the node's; built
	// only if some virtual server is no Service's (rare).
	var ours map[netip.Addr]bool
	for vk := range kernel {
		if _, want := p.ownerOf[vk]; want || w.vss[vk] {
			continue
		}
		if ours == nil {
			ours = make(map[netip.Addr]bool, len(addrs)+len(p.addrRef)+len(st.NodeIPs))
			for _, a := range addrs {
				ours[a] = true
			}
			for a := range p.addrRef {
				ours[a] = true
			}
			for _, a := range st.NodeIPs {
				ours[a] = true
			}
		}
		if !ours[vk.Addr] || p.excluded(vk.Addr) {
			continue
		}
		if err := p.os.DeleteVirtualServer(vk); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete virtual server %s: %w", vk, err))
		}
		delete(p.vs, vk)
		delete(p.terminating, vk)
	}
	if !w.addr && !sameAddrs(addrs, p.addrs) {
		touched := sets.New[netip.Addr](addrs...)
		p.addrs = make(map[netip.Addr]bool, len(addrs))
		for _, a := range addrs {
			p.addrs[a] = true
		}
		for a := range p.addrRef {
			touched.Insert(a)
		}
		errs = append(errs, p.syncAddrs(touched), p.removeAddrs(touched))
	}
	if !w.ipsets && !p.sameSets(entries) {
		touched := map[string]sets.Set[string]{}
		for n, es := range entries {
			p.sets[n] = es
			touched[n] = es.Clone()
		}
		for n, m := range p.setRef {
			if touched[n] == nil {
				touched[n] = sets.New[string]()
			}
			for e := range m {
				touched[n].Insert(e)
			}
		}
		errs = append(errs, p.applySetDiff(touched))
	}
	return errors.Join(errs...)
}

// sameAddrs says the kernel's kube-ipvs0 addresses are the cached ones,
// which (after every Sync) are the wanted ones: the common case, checked
// without allocating.
func sameAddrs(kernel []netip.Addr, cached map[netip.Addr]bool) bool {
	if len(kernel) != len(cached) {
		return false
	}
	for _, a := range kernel {
		if !cached[a] {
			return false
		}
	}
	return true
}

// sameSets does the same for the ipsets: kernel entries equal the cache,
// and the cache holds exactly the wanted entries.
func (p *Plane) sameSets(kernel map[string]sets.Set[string]) bool {
	for n, es := range kernel {
		have, want := p.sets[n], p.setRef[n]
		if len(es) != len(have) || len(es) != len(want) {
			return false
		}
		for e := range es {
			if !have.Has(e) || want[e] <= 0 {
				return false
			}
		}
	}
	return true
}

// applyReals corrects the real servers of the virtual servers read.
func (p *Plane) applyReals(st *servicestate.State, w *writes, reals map[VSKey][]RealServer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.everything || !p.initialized {
		return nil
	}
	var errs []error
	for vk, cur := range reals {
		if w.vss[vk] {
			continue
		}
		d, ok := p.desiredOf(st, vk)
		if !ok {
			continue
		}
		if realsMatch(d.Reals, cur, p.terminating[vk]) {
			continue
		}
		errs = append(errs, p.syncRealsFrom(d, cur))
	}
	return errors.Join(errs...)
}

// realsMatch says the kernel has exactly want at weight 1, plus draining
// ones at weight 0.
func realsMatch(want []netip.AddrPort, cur []RealServer, draining map[netip.AddrPort]time.Time) bool {
	n := 0
	wantSet := make(map[netip.AddrPort]bool, len(want))
	for _, ap := range want {
		wantSet[ap] = true
	}
	for _, r := range cur {
		ap := r.AddrPort()
		switch {
		case wantSet[ap] && r.Weight == 1:
			n++
		case !wantSet[ap] && r.Weight == 0 && hasKey(draining, ap):
		default:
			return false
		}
	}
	return n == len(wantSet)
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}
