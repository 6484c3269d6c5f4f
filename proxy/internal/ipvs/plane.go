package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// DummyName is the interface holding ClusterIPs, external IPs and LB IPs so
// the node accepts packets for them and IPVS sees them in LOCAL_IN.
const DummyName = "kube-ipvs0"

// Options configure the plane (from KubeProxyConfiguration's ipvs section).
type Options struct {
	Families      []v1.IPFamily
	Scheduler     string // default "rr"
	ClusterCIDRs  []netip.Prefix
	MasqueradeAll bool
	StrictARP     bool
	Timeouts      Timeouts
	// ExcludeCIDRs: virtual servers there are never cleaned up (they are
	// someone else's), as upstream's excludeCIDRs.
	ExcludeCIDRs []netip.Prefix
	// GracePeriod bounds how long a removed TCP real server drains.
	GracePeriod time.Duration
	Now         func() time.Time
}

// Plane is the IPVS DataPlane.
type Plane struct {
	os   OS
	opts Options
	log  *zap.Logger

	mu          sync.Mutex
	initialized bool
	// owned is what each Service port programmed last, so an incremental
	// sync can remove what a changed port no longer wants.
	owned map[servicestate.Key][]VSKey
	// addrs and sets cache the kernel's dummy addresses and ipset entries
	// (read at every full sync) so a sync only writes differences.
	addrs map[netip.Addr]bool
	vs    map[VSKey]VirtualServer
	sets  map[string]sets.Set[string]
	// setRef counts the Service ports wanting each set entry; contrib is
	// each port's share, so a change only recounts that port.
	setRef  map[string]map[string]int
	contrib map[servicestate.Key]contribution
	// addrRef and addrContrib do the same for kube-ipvs0's addresses.
	addrRef     map[netip.Addr]int
	addrContrib map[servicestate.Key][]netip.Addr
	setTypes    map[string]bool
	// terminating real servers: weight 0, deleted when idle or at the deadline.
	terminating map[VSKey]map[netip.AddrPort]time.Time
	// ownerOf is owned inverted: the Service port each virtual server is for.
	ownerOf map[VSKey]servicestate.Key
	// reals is what this process last made each virtual server's real
	// servers: a hint (never trusted for removal) that lets a change add
	// its new real servers before the kernel's are read (addNewReals).
	reals map[VSKey][]netip.AddrPort
	// written is what Sync and Reap changed since the background
	// reconcile's last kernel read (see Reconcile); nil when none runs.
	written *writes
	// iptMu serializes iptables-restore runs (Sync's and Reconcile's).
	iptMu sync.Mutex
}

var _ servicestate.DataPlane = (*Plane)(nil)

// New builds a plane; nothing touches the kernel before the first Sync.
func New(osi OS, opts Options, log *zap.Logger) *Plane {
	if opts.Scheduler == "" {
		opts.Scheduler = "rr"
	}
	if opts.GracePeriod == 0 {
		opts.GracePeriod = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.Families) == 0 {
		opts.Families = []v1.IPFamily{v1.IPv4Protocol}
	}
	setTypes := map[string]bool{}
	for _, f := range opts.Families {
		for _, s := range ipsetsFor(f) {
			setTypes[s.Name] = true
		}
	}
	return &Plane{os: osi, opts: opts, log: log, owned: map[servicestate.Key][]VSKey{}, setTypes: setTypes,
		setRef: map[string]map[string]int{}, contrib: map[servicestate.Key]contribution{},
		addrRef: map[netip.Addr]int{}, addrContrib: map[servicestate.Key][]netip.Addr{},
		terminating: map[VSKey]map[netip.AddrPort]time.Time{}, ownerOf: map[VSKey]servicestate.Key{},
		reals: map[VSKey][]netip.AddrPort{}}
}

// Name implements DataPlane.
func (p *Plane) Name() string { return "ipvs" }

// desiredVS is one virtual server and the real servers it should have.
type desiredVS struct {
	VS    VirtualServer
	Reals []netip.AddrPort
}

func (p *Plane) virtualServers(st *servicestate.State, k servicestate.Key) []desiredVS {
	sp := st.Services[k]
	if sp == nil {
		return nil
	}
	sched := sp.Scheduler
	if sched == "" {
		sched = p.opts.Scheduler
	}
	reals := func(eps []servicestate.Endpoint) []netip.AddrPort {
		out := make([]netip.AddrPort, 0, len(eps))
		for _, e := range eps {
			out = append(out, netip.AddrPortFrom(e.IP, uint16(e.Port)))
		}
		return out
	}
	mk := func(a netip.Addr, port int32, r []netip.AddrPort) desiredVS {
		return desiredVS{VS: VirtualServer{VSKey: VSKey{Protocol: sp.Name.Protocol, Addr: a, Port: uint16(port)},
			Scheduler: sched, Timeout: uint32(max(sp.StickyMaxAgeSeconds, 0))}, Reals: r}
	}
	cl, ex := reals(st.ClusterEndpoints(k)), reals(st.ExternalEndpoints(k))
	out := []desiredVS{mk(sp.ClusterIP, sp.Port, cl)}
	for _, a := range sp.ExternalIPs {
		out = append(out, mk(a, sp.Port, ex))
	}
	for _, a := range sp.LoadBalancerIPs {
		out = append(out, mk(a, sp.Port, ex))
	}
	if sp.NodePort > 0 {
		for _, a := range st.NodeIPs {
			if servicestate.FamilyOf(a) == sp.Family {
				out = append(out, mk(a, sp.NodePort, ex))
			}
		}
	}
	return out
}

// Sync implements DataPlane.
func (p *Plane) Sync(ctx context.Context, st *servicestate.State, changed sets.Set[servicestate.Key], full bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if !p.initialized {
		if err := p.setup(); err != nil {
			return err
		}
		full = true
	}
	// Which keys to (re)program, and the virtual servers each wants.
	keys := changed
	if full {
		keys = make(sets.Set[servicestate.Key], max(len(st.Services), len(p.owned)))
		for k := range st.Services {
			keys.Insert(k)
		}
		for k := range p.owned {
			keys.Insert(k)
		}
	}
	want := make(map[VSKey]desiredVS, len(keys))
	wantBy := make(map[servicestate.Key][]VSKey, len(keys))
	for k := range keys {
		for _, d := range p.virtualServers(st, k) {
			want[d.VS.VSKey] = d
			wantBy[k] = append(wantBy[k], d.VS.VSKey)
		}
	}
	var kernel map[VSKey]VirtualServer
	if full {
		vss, err := p.os.VirtualServers()
		if err != nil {
			return fmt.Errorf("list virtual servers: %w", err)
		}
		// Room for what this sync adds: growing maps of 10,000 entries
		// step by step is a good part of a first sync's CPU.
		kernel = make(map[VSKey]VirtualServer, max(len(vss), len(want)))
		for _, v := range vss {
			kernel[v.VSKey] = v
		}
		p.vs = kernel
		if len(p.owned) == 0 {
			p.owned = make(map[servicestate.Key][]VSKey, len(wantBy))
			p.ownerOf = make(map[VSKey]servicestate.Key, len(want))
			p.reals = make(map[VSKey][]netip.AddrPort, len(want))
		}
		if err := p.readCaches(); err != nil {
			return err
		}
	}
	// Addresses first: a virtual server on an address the node does not
	// own would receive nothing.
	touchedAddrs := p.countAddrs(st, keys, full)
	errs = append(errs, p.syncAddrs(touchedAddrs))
	// Sets and rules before virtual servers: a Service's first packets must
	// already be masqueraded (and firewalled) as they should be.
	errs = append(errs, p.syncIPSets(st, keys, full))
	if full {
		errs = append(errs, p.ensureIPTables())
		p.written.all()
	}
	var fresh []desiredVS
	for _, d := range sortedDesired(want) {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, exists := p.vs[d.VS.VSKey]; !exists {
			fresh = append(fresh, d)
			continue
		}
		errs = append(errs, p.ensureVS(d))
	}
	errs = append(errs, p.addFresh(fresh))
	// Remove what changed keys no longer want.
	stale := map[VSKey]bool{}
	for k := range keys {
		for _, vk := range p.owned[k] {
			if _, ok := want[vk]; !ok {
				stale[vk] = true
			}
		}
		if ws := wantBy[k]; len(ws) > 0 {
			p.owned[k] = ws
			for _, vk := range ws {
				p.ownerOf[vk] = k
			}
		} else {
			delete(p.owned, k)
		}
	}
	for vk := range want {
		p.written.vs(vk)
	}
	if full {
		// Adopted leftovers (e.g. from before a restart) on our addresses.
		ours := p.ourAddrs(st)
		for vk := range kernel {
			if _, ok := want[vk]; !ok && ours[vk.Addr] && !p.excluded(vk.Addr) {
				stale[vk] = true
			}
		}
	}
	for vk := range stale {
		if err := p.os.DeleteVirtualServer(vk); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete virtual server %s: %w", vk, err))
		}
		delete(p.vs, vk)
		delete(p.reals, vk)
		delete(p.terminating, vk)
		if _, still := want[vk]; !still {
			delete(p.ownerOf, vk)
		}
		p.written.vs(vk)
	}
	errs = append(errs, p.removeAddrs(touchedAddrs))
	errs = append(errs, p.reapLocked())
	return errors.Join(errs...)
}

// sortedDesired orders virtual servers so kernel writes happen in a
// stable order (logs, tests).
func sortedDesired(m map[VSKey]desiredVS) []desiredVS {
	out := make([]desiredVS, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].VS.VSKey, out[j].VS.VSKey
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c < 0
		}
		if a.Port != b.Port {
			return a.Port < b.Port
		}
		return a.Protocol < b.Protocol
	})
	return out
}

func (p *Plane) excluded(a netip.Addr) bool {
	for _, c := range p.opts.ExcludeCIDRs {
		if c.Contains(a) {
			return true
		}
	}
	return false
}

// setup does the once-per-process work: sysctls, IPVS timeouts, the dummy
// interface and the ipsets. It changes nothing that carries traffic.
func (p *Plane) setup() error {
	sysctls := [][2]string{
		{"net/ipv4/vs/conntrack", "1"}, // so iptables masquerade sees IPVS'd packets
		// Connections to a deleted real server fail fast instead of hanging.
		{"net/ipv4/vs/expire_nodest_conn", "1"},
		{"net/ipv4/vs/expire_quiescent_template", "1"},
		{"net/ipv4/ip_forward", "1"},
	}
	if hasIPv6(p.opts.Families) {
		sysctls = append(sysctls, [2]string{"net/ipv6/conf/all/forwarding", "1"})
	}
	// Kernels before 5.9 drop SYNs that reuse a port of a connection in
	// TIME_WAIT when conn_reuse_mode=1 (1s stalls); upstream sets 0 there.
	if rel, err := p.os.Sysctl("kernel/osrelease"); err == nil && kernelBefore(rel, 5, 9) {
		sysctls = append(sysctls, [2]string{"net/ipv4/vs/conn_reuse_mode", "0"})
	}
	if p.opts.StrictARP {
		// Do not answer ARP for kube-ipvs0's addresses on other interfaces.
		sysctls = append(sysctls, [2]string{"net/ipv4/conf/all/arp_ignore", "1"}, [2]string{"net/ipv4/conf/all/arp_announce", "2"})
	}
	for _, s := range sysctls {
		if cur, err := p.os.Sysctl(s[0]); err == nil && strings.TrimSpace(cur) == s[1] {
			continue
		}
		if err := p.os.SetSysctl(s[0], s[1]); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", s[0], s[1], err)
		}
	}
	if p.opts.Timeouts != (Timeouts{}) {
		if err := p.os.SetTimeouts(p.opts.Timeouts); err != nil {
			return fmt.Errorf("ipvs timeouts: %w", err)
		}
	}
	if err := p.os.EnsureDummy(DummyName); err != nil {
		return fmt.Errorf("dummy interface %s: %w", DummyName, err)
	}
	var all []IPSet
	for _, f := range p.opts.Families {
		all = append(all, ipsetsFor(f)...)
	}
	if err := p.os.EnsureIPSets(all); err != nil {
		return fmt.Errorf("ipsets: %w", err)
	}
	p.initialized = true
	return nil
}

func hasIPv6(fs []v1.IPFamily) bool {
	for _, f := range fs {
		if f == v1.IPv6Protocol {
			return true
		}
	}
	return false
}

func kernelBefore(release string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(strings.TrimSpace(release), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma < major || (ma == major && mi < minor)
}

func (p *Plane) readCaches() error {
	addrs, err := p.os.LinkAddrs(DummyName)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", DummyName, err)
	}
	p.addrs = map[netip.Addr]bool{}
	for _, a := range addrs {
		p.addrs[a] = true
	}
	var names []string
	for _, f := range p.opts.Families {
		for _, s := range ipsetsFor(f) {
			names = append(names, s.Name)
		}
	}
	entries, err := p.os.IPSetEntries(names...)
	if err != nil {
		return fmt.Errorf("ipsets: %w", err)
	}
	p.sets = make(map[string]sets.Set[string], len(names))
	for _, n := range names {
		p.sets[n] = sets.New(entries[n]...)
	}
	return nil
}

// ourAddrs are the addresses bound to kube-ipvs0 plus the node IPs: a
// virtual server there that no Service wants is ours to remove.
func (p *Plane) ourAddrs(st *servicestate.State) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for a := range p.addrs {
		m[a] = true
	}
	for a := range p.wantAddrs(st) {
		m[a] = true
	}
	for _, a := range st.NodeIPs {
		m[a] = true
	}
	return m
}

func (p *Plane) wantAddrs(st *servicestate.State) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(st.Services))
	for _, sp := range st.Services {
		m[sp.ClusterIP] = true
		for _, a := range sp.ExternalIPs {
			m[a] = true
		}
		for _, a := range sp.LoadBalancerIPs {
			m[a] = true
		}
	}
	return m
}

// countAddrs updates the per-address reference counts for keys (all on a
// full sync) and returns the addresses whose wantedness may have changed.
func (p *Plane) countAddrs(st *servicestate.State, keys sets.Set[servicestate.Key], full bool) sets.Set[netip.Addr] {
	touched := sets.New[netip.Addr]()
	if full {
		n := len(st.Services)
		p.addrRef, p.addrContrib = make(map[netip.Addr]int, n), make(map[servicestate.Key][]netip.Addr, n)
		touched = make(sets.Set[netip.Addr], n+len(p.addrs))
		keys = sets.KeySet(st.Services)
		for a := range p.addrs {
			touched.Insert(a)
		}
	}
	for k := range keys {
		for _, a := range p.addrContrib[k] {
			if p.addrRef[a]--; p.addrRef[a] <= 0 {
				delete(p.addrRef, a)
			}
			touched.Insert(a)
		}
		sp := st.Services[k]
		if sp == nil {
			delete(p.addrContrib, k)
			continue
		}
		as := append(append([]netip.Addr{sp.ClusterIP}, sp.ExternalIPs...), sp.LoadBalancerIPs...)
		for _, a := range as {
			p.addrRef[a]++
			touched.Insert(a)
		}
		p.addrContrib[k] = as
	}
	return touched
}

func (p *Plane) syncAddrs(touched sets.Set[netip.Addr]) error {
	var add []netip.Addr
	for a := range touched {
		if p.addrRef[a] > 0 && !p.addrs[a] {
			add = append(add, a)
		}
	}
	if len(add) == 0 {
		return nil
	}
	sort.Slice(add, func(i, j int) bool { return add[i].Less(add[j]) })
	if err := p.os.AddLinkAddrs(DummyName, add); err != nil {
		// Which ones failed is in err only; the next sync binds them all
		// again (binding a bound address is not an error).
		return fmt.Errorf("bind Service addresses: %w", err)
	}
	for _, a := range add {
		p.addrs[a] = true
	}
	p.written.addrs()
	return nil
}

// removeAddrs runs after stale virtual servers are gone.
func (p *Plane) removeAddrs(touched sets.Set[netip.Addr]) error {
	var errs []error
	for a := range touched {
		if p.addrRef[a] > 0 || !p.addrs[a] {
			continue
		}
		if err := p.os.DelLinkAddr(DummyName, a); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, fmt.Errorf("unbind %s: %w", a, err))
			continue
		}
		delete(p.addrs, a)
		p.written.addrs()
	}
	return errors.Join(errs...)
}

// addFresh creates virtual servers with their real servers in one batch
// (most of a first sync at thousands of Services).
func (p *Plane) addFresh(fresh []desiredVS) error {
	if len(fresh) == 0 {
		return nil
	}
	vss := make([]VirtualServer, len(fresh))
	reals := make([][]RealServer, len(fresh))
	for i, d := range fresh {
		vss[i] = d.VS
		rs := make([]RealServer, len(d.Reals))
		for j, ap := range d.Reals {
			rs[j] = RealServer{Addr: ap.Addr(), Port: ap.Port(), Weight: 1}
		}
		reals[i] = rs
		// Recorded even if the batch fails: a failed sync is retried as a
		// full one, which reads the kernel's table again.
		p.vs[d.VS.VSKey] = d.VS
		p.reals[d.VS.VSKey] = d.Reals
		delete(p.terminating, d.VS.VSKey)
	}
	errs := []error{p.os.AddVirtualServers(vss, reals)}
	for _, d := range fresh {
		// As syncReals: UDP entries made while the Service had no virtual
		// server point nowhere.
		if vk := d.VS.VSKey; vk.Protocol == v1.ProtocolUDP && len(d.Reals) > 0 {
			errs = append(errs, p.os.DeleteConntrack(servicestate.FamilyOf(vk.Addr),
				ConntrackFilter{Protocol: v1.ProtocolUDP, OrigDst: vk.Addr, OrigDstPort: vk.Port}))
		}
	}
	return errors.Join(errs...)
}

// ensureVS compares with p.vs, the kernel's virtual servers as read at the
// last full sync and kept up to date since.
func (p *Plane) ensureVS(d desiredVS) error {
	cur, exists := p.vs[d.VS.VSKey]
	switch {
	case !exists:
		if err := p.os.AddVirtualServer(d.VS); err != nil {
			return fmt.Errorf("add virtual server %s: %w", d.VS.VSKey, err)
		}
	case cur != d.VS:
		if err := p.os.UpdateVirtualServer(d.VS); err != nil {
			return fmt.Errorf("update virtual server %s: %w", d.VS.VSKey, err)
		}
	}
	p.vs[d.VS.VSKey] = d.VS
	return p.syncReals(d, !exists)
}

// syncReals makes vk's real servers d.Reals; created says the virtual
// server was just added, so it has none (one netlink dump saved per new
// Service, which is most of a first sync).
func (p *Plane) syncReals(d desiredVS, created bool) error {
	vk := d.VS.VSKey
	var cur []RealServer
	if !created {
		p.addNewReals(d)
		var err error
		if cur, err = p.os.RealServers(vk); err != nil {
			return fmt.Errorf("real servers of %s: %w", vk, err)
		}
	}
	p.reals[vk] = d.Reals
	return p.syncRealsFrom(d, cur)
}

// addNewReals adds the real servers d wants that this process did not
// give the virtual server last time, before its real servers are read:
// a new endpoint is in the kernel one netlink dump sooner (on a slow
// kernel the read is a good part of a one-Service change). Only
// additions: what to remove or reweight needs the kernel's connection
// counts. Errors are dropped on purpose: syncRealsFrom, working from the
// kernel's answer, adds whatever is still missing (and reports its
// error), and leaves alone one that was already there (EEXIST here: a
// draining one coming back, or one another process added).
func (p *Plane) addNewReals(d desiredVS) {
	if d.VS.Protocol == v1.ProtocolUDP {
		// syncRealsFrom clears UDP conntrack entries when the kernel had
		// no real server before: it must see the kernel as it was.
		return
	}
	last, ok := p.reals[d.VS.VSKey]
	if !ok {
		return // not programmed by this process: adopting, read first
	}
	had := make(map[netip.AddrPort]bool, len(last))
	for _, ap := range last {
		had[ap] = true
	}
	var add []RealServer
	for _, ap := range d.Reals {
		if !had[ap] {
			add = append(add, RealServer{Addr: ap.Addr(), Port: ap.Port(), Weight: 1})
		}
	}
	if len(add) > 0 {
		_ = p.os.AddRealServers(d.VS.VSKey, add)
	}
}

// syncRealsFrom makes vk's real servers d.Reals, cur being the kernel's.
func (p *Plane) syncRealsFrom(d desiredVS, cur []RealServer) error {
	vk := d.VS.VSKey
	have := make(map[netip.AddrPort]RealServer, len(cur))
	for _, r := range cur {
		have[r.AddrPort()] = r
	}
	var errs []error
	var add []RealServer
	wantSet := make(map[netip.AddrPort]bool, len(d.Reals))
	for _, ap := range d.Reals {
		wantSet[ap] = true
		r, ok := have[ap]
		switch {
		case !ok:
			add = append(add, RealServer{Addr: ap.Addr(), Port: ap.Port(), Weight: 1})
		case r.Weight != 1:
			// Back from draining (or adopted with another weight).
			r.Weight = 1
			if err := p.os.UpdateRealServer(vk, r); err != nil {
				errs = append(errs, fmt.Errorf("update real server %s of %s: %w", ap, vk, err))
			}
		}
		if t := p.terminating[vk]; t != nil {
			delete(t, ap)
		}
	}
	if len(add) > 0 {
		errs = append(errs, p.os.AddRealServers(vk, add))
	}
	for ap, r := range have {
		if wantSet[ap] {
			continue
		}
		errs = append(errs, p.removeReal(vk, r))
	}
	// UDP: entries made while there was no endpoint point nowhere and would
	// keep a client's flow black-holed; clear them when the first arrives.
	if vk.Protocol == v1.ProtocolUDP && len(cur) == 0 && len(d.Reals) > 0 {
		errs = append(errs, p.os.DeleteConntrack(servicestate.FamilyOf(vk.Addr),
			ConntrackFilter{Protocol: v1.ProtocolUDP, OrigDst: vk.Addr, OrigDstPort: vk.Port}))
	}
	return errors.Join(errs...)
}

// removeReal starts graceful termination: TCP real servers with connections
// get weight 0 (no new connections) and drain; others go at once.
func (p *Plane) removeReal(vk VSKey, r RealServer) error {
	ap := r.AddrPort()
	if vk.Protocol == v1.ProtocolTCP || vk.Protocol == v1.ProtocolSCTP {
		if r.ActiveConns+r.InactiveConns > 0 {
			if r.Weight != 0 {
				r.Weight = 0
				if err := p.os.UpdateRealServer(vk, r); err != nil {
					return fmt.Errorf("drain real server %s of %s: %w", ap, vk, err)
				}
			}
			if p.terminating[vk] == nil {
				p.terminating[vk] = map[netip.AddrPort]time.Time{}
			}
			if _, ok := p.terminating[vk][ap]; !ok {
				p.terminating[vk][ap] = p.opts.Now()
			}
			return nil
		}
	}
	if err := p.os.DeleteRealServer(vk, r); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete real server %s of %s: %w", ap, vk, err)
	}
	if t := p.terminating[vk]; t != nil {
		delete(t, ap)
	}
	if vk.Protocol == v1.ProtocolUDP {
		// UDP has no connection end: flows already pinned to the endpoint
		// would go on to a dead address.
		return p.os.DeleteConntrack(servicestate.FamilyOf(vk.Addr),
			ConntrackFilter{Protocol: v1.ProtocolUDP, OrigDst: vk.Addr, OrigDstPort: vk.Port, ReplySrc: ap.Addr()})
	}
	return nil
}

// Reap deletes drained real servers: idle ones, and those past GracePeriod.
// The controller calls it between syncs so draining ends without a sync.
func (p *Plane) Reap() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reapLocked()
}

func (p *Plane) reapLocked() error {
	if len(p.terminating) == 0 {
		return nil // the common case, without a clock read
	}
	var errs []error
	now := p.opts.Now()
	for vk, t := range p.terminating {
		if len(t) == 0 {
			delete(p.terminating, vk)
			continue
		}
		cur, err := p.os.RealServers(vk)
		if err != nil {
			delete(p.terminating, vk) // the virtual server went away
			continue
		}
		byAP := map[netip.AddrPort]RealServer{}
		for _, r := range cur {
			byAP[r.AddrPort()] = r
		}
		for ap, since := range t {
			r, ok := byAP[ap]
			if !ok {
				delete(t, ap)
				continue
			}
			if r.ActiveConns+r.InactiveConns > 0 && now.Sub(since) < p.opts.GracePeriod {
				continue
			}
			p.written.vs(vk)
			if err := p.os.DeleteRealServer(vk, r); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("delete drained real server %s of %s: %w", ap, vk, err))
				continue
			}
			delete(t, ap)
		}
	}
	return errors.Join(errs...)
}

// Terminating lists draining real servers, for tests and debugging.
func (p *Plane) Terminating() map[VSKey][]netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[VSKey][]netip.AddrPort{}
	for vk, t := range p.terminating {
		for ap := range t {
			out[vk] = append(out[vk], ap)
		}
	}
	return out
}

// contribution is what one Service port puts into the ipsets.
type contribution map[string][]string

func (p *Plane) contribution(st *servicestate.State, k servicestate.Key) contribution {
	sp := st.Services[k]
	if sp == nil {
		return nil
	}
	c := contribution{}
	f, proto := sp.Family, sp.Name.Protocol
	add := func(base, e string) { n := setName(base, f); c[n] = append(c[n], e) }
	add(setClusterIP, ipPort(sp.ClusterIP, proto, sp.Port))
	for _, e := range st.LocalEndpoints[k] {
		add(setLoopBack, fmt.Sprintf("%s,%s", ipPort(e.IP, proto, e.Port), e.IP))
	}
	for _, a := range sp.ExternalIPs {
		if sp.ExternalPolicyLocal {
			add(setExternalLoc, ipPort(a, proto, sp.Port))
		} else {
			add(setExternalIP, ipPort(a, proto, sp.Port))
		}
	}
	for _, a := range sp.LoadBalancerIPs {
		e := ipPort(a, proto, sp.Port)
		add(setLB, e)
		if sp.ExternalPolicyLocal {
			add(setLBLocal, e)
		}
		if len(sp.LoadBalancerSourceRanges) > 0 {
			add(setLBFW, e)
			for _, r := range sp.LoadBalancerSourceRanges {
				add(setLBSourceCIDR, e+","+r.String())
			}
		}
	}
	if sp.NodePort > 0 {
		np := fmt.Sprint(sp.NodePort)
		add(setNodePort+string(proto), np)
		if sp.ExternalPolicyLocal {
			add(setNodePortLoc+string(proto), np)
		}
	}
	if sp.HealthCheckNodePort > 0 {
		add(setHealthCheck, fmt.Sprint(sp.HealthCheckNodePort))
	}
	return c
}

// syncIPSets keeps a reference count per set entry (several Service ports
// can share one, e.g. a NodePort number across families' sets is not, but
// two ports' loop-back entries can be) so an incremental sync only looks at
// the changed keys; a full sync recounts everything and compares with the
// kernel's entries.
func (p *Plane) syncIPSets(st *servicestate.State, keys sets.Set[servicestate.Key], full bool) error {
	touched := map[string]sets.Set[string]{}
	touch := func(n, e string) {
		if touched[n] == nil {
			touched[n] = sets.New[string]()
		}
		touched[n].Insert(e)
	}
	ref := func(n, e string, d int) {
		m := p.setRef[n]
		if m == nil {
			m = map[string]int{}
			p.setRef[n] = m
		}
		if m[e] += d; m[e] <= 0 {
			delete(m, e)
		}
		touch(n, e)
	}
	if full {
		p.setRef, p.contrib = map[string]map[string]int{}, make(map[servicestate.Key]contribution, len(st.Services))
		keys = sets.KeySet(st.Services)
		for n, have := range p.sets {
			for e := range have {
				touch(n, e) // kernel entries nobody wants go
			}
		}
	}
	for k := range keys {
		for n, es := range p.contrib[k] {
			for _, e := range es {
				ref(n, e, -1)
			}
		}
		c := p.contribution(st, k)
		for n, es := range c {
			for _, e := range es {
				ref(n, e, 1)
			}
		}
		if c == nil {
			delete(p.contrib, k)
		} else {
			p.contrib[k] = c
		}
	}
	return p.applySetDiff(touched)
}

// applySetDiff writes the touched entries whose wantedness (setRef)
// differs from the kernel's (sets).
func (p *Plane) applySetDiff(touched map[string]sets.Set[string]) error {
	add, del := map[string][]string{}, map[string][]string{}
	for n, es := range touched {
		have := p.sets[n]
		if have == nil {
			if _, ours := p.setTypes[n]; !ours {
				continue // a family this plane does not serve
			}
			have = sets.New[string]()
			p.sets[n] = have
		}
		for e := range es {
			want := p.setRef[n][e] > 0
			switch {
			case want && !have.Has(e):
				add[n] = append(add[n], e)
			case !want && have.Has(e):
				del[n] = append(del[n], e)
			}
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	for _, m := range []map[string][]string{add, del} {
		for _, es := range m {
			sort.Strings(es)
		}
	}
	// One batch for every set: an ipset exec costs more than its work.
	p.written.sets()
	if err := p.os.UpdateIPSets(add, del); err != nil {
		// The caches may be off now; the next full sync rereads them.
		return fmt.Errorf("ipsets: %w", err)
	}
	for n, es := range add {
		p.sets[n].Insert(es...)
	}
	for n, es := range del {
		p.sets[n].Delete(es...)
	}
	return nil
}

// ourChains are the chains iptablesRules declares, per table.
var ourChains = map[string][]string{
	"nat":    {chainServices, chainPostrouting, chainMarkMasq, chainNodePort, chainLB},
	"filter": {chainInput, chainForward},
}

// Cleanup removes everything this proxy programs: virtual servers on
// kube-ipvs0's addresses and on node IPs at NodePorts it had, the
// interface, the rules and the ipsets (kube-proxy --cleanup).
func Cleanup(osi OS, families []v1.IPFamily, nodeIPs []netip.Addr) error {
	var errs []error
	ours := map[netip.Addr]bool{}
	if addrs, err := osi.LinkAddrs(DummyName); err == nil {
		for _, a := range addrs {
			ours[a] = true
		}
	}
	nodePorts := map[uint16]bool{}
	for _, f := range families {
		for _, p := range protocols {
			n := setName(setNodePort+string(p), f)
			if m, err := osi.IPSetEntries(n); err == nil {
				for _, e := range m[n] {
					var n uint16
					if _, err := fmt.Sscan(e, &n); err == nil {
						nodePorts[n] = true
					}
				}
			}
		}
	}
	node := map[netip.Addr]bool{}
	for _, a := range nodeIPs {
		node[a] = true
	}
	vss, err := osi.VirtualServers()
	if err != nil {
		errs = append(errs, err)
	}
	for _, vs := range vss {
		if ours[vs.Addr] || (node[vs.Addr] && nodePorts[vs.Port]) {
			if err := osi.DeleteVirtualServer(vs.VSKey); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	for _, f := range families {
		errs = append(errs, osi.RemoveIPTables(f, jumps, ourChains))
		for _, s := range ipsetsFor(f) {
			errs = append(errs, osi.DestroyIPSet(s.Name))
		}
	}
	errs = append(errs, osi.DeleteLink(DummyName))
	return errors.Join(errs...)
}
