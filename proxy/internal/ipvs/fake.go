package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	v1 "k8s.io/api/core/v1"
)

// ErrNotFound is returned by Fake for a missing object, as the kernel would.
var ErrNotFound = fmt.Errorf("not found")

// FakeVS is a virtual server and its real servers in the Fake.
type FakeVS struct {
	VS    VirtualServer
	Reals map[netip.AddrPort]RealServer
}

// FakeState is the whole kernel state the Fake holds; tests compare it.
type FakeState struct {
	VirtualServers map[VSKey]*FakeVS
	Links          map[string][]netip.Addr
	IPSets         map[string]IPSet
	IPSetEntries   map[string][]string
	Rules          map[v1.IPFamily]string
	Jumps          map[v1.IPFamily][]Jump
	Sysctls        map[string]string
	Timeouts       Timeouts
	Conntrack      []ConntrackFilter // deletions asked for, in order
}

// Fake is a stateful in-memory OS. Calls counts mutating calls, so tests
// can check that an incremental sync touched only what changed.
type Fake struct {
	mu    sync.Mutex
	S     FakeState
	Calls int
}

// NewFake returns an empty kernel.
func NewFake() *Fake {
	return &Fake{S: FakeState{VirtualServers: map[VSKey]*FakeVS{}, Links: map[string][]netip.Addr{},
		IPSets: map[string]IPSet{}, IPSetEntries: map[string][]string{}, Rules: map[v1.IPFamily]string{},
		Jumps: map[v1.IPFamily][]Jump{}, Sysctls: map[string]string{}}}
}

var _ OS = (*Fake)(nil)

func (f *Fake) VirtualServers() ([]VirtualServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []VirtualServer
	for _, v := range f.S.VirtualServers {
		out = append(out, v.VS)
	}
	return out, nil
}

func (f *Fake) AddVirtualServer(vs VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if _, ok := f.S.VirtualServers[vs.VSKey]; ok {
		return fmt.Errorf("virtual server %s exists", vs.VSKey)
	}
	f.S.VirtualServers[vs.VSKey] = &FakeVS{VS: vs, Reals: map[netip.AddrPort]RealServer{}}
	return nil
}

func (f *Fake) AddVirtualServers(vss []VirtualServer, reals [][]RealServer) error {
	var errs []error
	for i, vs := range vss {
		if err := f.AddVirtualServer(vs); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, f.AddRealServers(vs.VSKey, reals[i]))
	}
	return errors.Join(errs...)
}

func (f *Fake) UpdateVirtualServer(vs VirtualServer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	v, ok := f.S.VirtualServers[vs.VSKey]
	if !ok {
		return fmt.Errorf("virtual server %s: %w", vs.VSKey, ErrNotFound)
	}
	v.VS = vs
	return nil
}

func (f *Fake) DeleteVirtualServer(k VSKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if _, ok := f.S.VirtualServers[k]; !ok {
		return fmt.Errorf("virtual server %s: %w", k, ErrNotFound)
	}
	delete(f.S.VirtualServers, k)
	return nil
}

func (f *Fake) RealServers(k VSKey) ([]RealServer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.S.VirtualServers[k]
	if !ok {
		return nil, fmt.Errorf("virtual server %s: %w", k, ErrNotFound)
	}
	var out []RealServer
	for _, r := range v.Reals {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AddrPort().Compare(out[j].AddrPort()) < 0 })
	return out, nil
}

func (f *Fake) realOp(k VSKey, r RealServer, op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	v, ok := f.S.VirtualServers[k]
	if !ok {
		return fmt.Errorf("virtual server %s: %w", k, ErrNotFound)
	}
	cur, exists := v.Reals[r.AddrPort()]
	switch op {
	case "add":
		if exists {
			return fmt.Errorf("real server %s exists", r.AddrPort())
		}
		r.ActiveConns, r.InactiveConns = 0, 0
		v.Reals[r.AddrPort()] = r
	case "update":
		if !exists {
			return fmt.Errorf("real server %s: %w", r.AddrPort(), ErrNotFound)
		}
		cur.Weight = r.Weight
		v.Reals[r.AddrPort()] = cur
	case "del":
		if !exists {
			return fmt.Errorf("real server %s: %w", r.AddrPort(), ErrNotFound)
		}
		delete(v.Reals, r.AddrPort())
	}
	return nil
}

func (f *Fake) AddRealServer(k VSKey, r RealServer) error { return f.realOp(k, r, "add") }

func (f *Fake) AddRealServers(k VSKey, rs []RealServer) error {
	var errs []error
	for _, r := range rs {
		errs = append(errs, f.realOp(k, r, "add"))
	}
	return errors.Join(errs...)
}
func (f *Fake) UpdateRealServer(k VSKey, r RealServer) error { return f.realOp(k, r, "update") }
func (f *Fake) DeleteRealServer(k VSKey, r RealServer) error { return f.realOp(k, r, "del") }

// SetConns sets a real server's connection counters, as traffic would.
func (f *Fake) SetConns(k VSKey, ap netip.AddrPort, active, inactive int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.S.VirtualServers[k].Reals[ap]
	r.ActiveConns, r.InactiveConns = active, inactive
	f.S.VirtualServers[k].Reals[ap] = r
}

func (f *Fake) EnsureDummy(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.S.Links[name]; !ok {
		f.Calls++
		f.S.Links[name] = []netip.Addr{}
	}
	return nil
}

func (f *Fake) LinkAddrs(name string) ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.S.Links[name]
	if !ok {
		return nil, fmt.Errorf("link %s: %w", name, ErrNotFound)
	}
	return append([]netip.Addr(nil), l...), nil
}

func (f *Fake) AddLinkAddr(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	l := f.S.Links[name]
	for _, x := range l {
		if x == a {
			return fmt.Errorf("address %s exists", a)
		}
	}
	l = append(l, a)
	sort.Slice(l, func(i, j int) bool { return l[i].Less(l[j]) })
	f.S.Links[name] = l
	return nil
}

func (f *Fake) AddLinkAddrs(name string, as []netip.Addr) error {
	var errs []error
	for _, a := range as {
		errs = append(errs, f.AddLinkAddr(name, a))
	}
	return errors.Join(errs...)
}

func (f *Fake) DelLinkAddr(name string, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	l := f.S.Links[name]
	for i, x := range l {
		if x == a {
			f.S.Links[name] = append(l[:i:i], l[i+1:]...)
			return nil
		}
	}
	return fmt.Errorf("address %s: %w", a, ErrNotFound)
}

func (f *Fake) EnsureIPSets(sets []IPSet) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range sets {
		if _, ok := f.S.IPSets[s.Name]; !ok {
			f.Calls++
			f.S.IPSets[s.Name] = s
			f.S.IPSetEntries[s.Name] = []string{}
		}
	}
	return nil
}

func (f *Fake) IPSetEntries(names ...string) (map[string][]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(names))
	for _, n := range names {
		e, ok := f.S.IPSetEntries[n]
		if !ok {
			return nil, fmt.Errorf("ipset %s: %w", n, ErrNotFound)
		}
		out[n] = append([]string{}, e...)
	}
	return out, nil
}

// UpdateIPSets counts one call per set changed; a missing set fails the
// whole batch before anything changes, as ipset restore would at its line.
func (f *Fake) UpdateIPSets(add, del map[string][]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := map[string]bool{}
	for n := range add {
		names[n] = true
	}
	for n := range del {
		names[n] = true
	}
	for n := range names {
		if _, ok := f.S.IPSetEntries[n]; !ok {
			return fmt.Errorf("ipset %s: %w", n, ErrNotFound)
		}
	}
	for n := range names {
		f.Calls++
		m := map[string]bool{}
		for _, e := range f.S.IPSetEntries[n] {
			m[e] = true
		}
		for _, e := range del[n] {
			delete(m, e)
		}
		for _, e := range add[n] {
			m[e] = true
		}
		out := []string{}
		for e := range m {
			out = append(out, e)
		}
		sort.Strings(out)
		f.S.IPSetEntries[n] = out
	}
	return nil
}

func (f *Fake) EnsureIPTables(family v1.IPFamily, jumps []Jump, rules string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.S.Rules[family] != rules {
		f.Calls++
	}
	f.S.Rules[family] = rules
	f.S.Jumps[family] = append([]Jump(nil), jumps...)
	return nil
}

func (f *Fake) Sysctl(path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.S.Sysctls[path]
	if !ok {
		return "", fmt.Errorf("sysctl %s: %w", path, ErrNotFound)
	}
	return v, nil
}

func (f *Fake) SetSysctl(path, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	f.S.Sysctls[path] = value
	return nil
}

func (f *Fake) SetTimeouts(t Timeouts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	f.S.Timeouts = t
	return nil
}

func (f *Fake) DeleteConntrack(_ v1.IPFamily, c ConntrackFilter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	f.S.Conntrack = append(f.S.Conntrack, c)
	return nil
}

func (f *Fake) RemoveIPTables(family v1.IPFamily, _ []Jump, _ map[string][]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	delete(f.S.Rules, family)
	delete(f.S.Jumps, family)
	return nil
}

func (f *Fake) DestroyIPSet(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	delete(f.S.IPSets, name)
	delete(f.S.IPSetEntries, name)
	return nil
}

func (f *Fake) DeleteLink(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	delete(f.S.Links, name)
	return nil
}
