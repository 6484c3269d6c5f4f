// Package ipvs is the IPVS data plane: it programs a servicestate.State into
// the kernel's IPVS table, the kube-ipvs0 dummy interface, ipsets and a fixed
// set of iptables rules. Every kernel access goes through OS, so the sync
// logic is tested against the stateful Fake.
package ipvs

import (
	"fmt"
	"net/netip"
	"time"

	v1 "k8s.io/api/core/v1"
)

// VSKey identifies a virtual server in the kernel.
type VSKey struct {
	Protocol v1.Protocol
	Addr     netip.Addr
	Port     uint16
}

func (k VSKey) String() string {
	return fmt.Sprintf("%s/%s", k.Protocol, netip.AddrPortFrom(k.Addr, k.Port))
}

// VirtualServer is one IPVS service.
type VirtualServer struct {
	VSKey
	Scheduler string
	// Timeout > 0 makes the service persistent (sessionAffinity ClientIP).
	Timeout uint32
}

// RealServer is one IPVS destination with its connection counters.
type RealServer struct {
	Addr          netip.Addr
	Port          uint16
	Weight        int
	ActiveConns   int
	InactiveConns int
}

// AddrPort is the real server's address.
func (r RealServer) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

// IPSet describes one ipset (its entries are managed separately).
type IPSet struct {
	Name   string
	Type   string // hash:ip,port, hash:ip,port,ip, hash:ip,port,net, bitmap:port
	Family v1.IPFamily
}

// Jump is a rule in a built-in chain that sends packets to one of our chains.
type Jump struct {
	Table, Chain, Target string
}

// ConntrackFilter selects conntrack entries to delete; zero fields match any.
type ConntrackFilter struct {
	Protocol    v1.Protocol
	OrigDst     netip.Addr
	OrigDstPort uint16
	ReplySrc    netip.Addr
}

// Timeouts are IPVS's connection timeouts (zero leaves one unchanged).
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// OS is everything the data plane asks of the kernel.
type OS interface {
	VirtualServers() ([]VirtualServer, error)
	AddVirtualServer(VirtualServer) error
	// AddVirtualServers creates vss[i] with real servers reals[i], in as
	// few kernel round trips as the OS can; the error joins each failure.
	AddVirtualServers(vss []VirtualServer, reals [][]RealServer) error
	UpdateVirtualServer(VirtualServer) error
	DeleteVirtualServer(VSKey) error
	RealServers(VSKey) ([]RealServer, error)
	AddRealServer(VSKey, RealServer) error
	// AddRealServers adds several at once (one kernel round trip where
	// the OS can batch); the error joins each failed one's.
	AddRealServers(VSKey, []RealServer) error
	UpdateRealServer(VSKey, RealServer) error
	DeleteRealServer(VSKey, RealServer) error

	// EnsureDummy creates the dummy interface (up) if it is missing.
	EnsureDummy(name string) error
	LinkAddrs(name string) ([]netip.Addr, error)
	AddLinkAddr(name string, a netip.Addr) error
	// AddLinkAddrs binds several (one kernel round trip per batch where
	// the OS can); one already bound is not an error.
	AddLinkAddrs(name string, as []netip.Addr) error
	DelLinkAddr(name string, a netip.Addr) error

	// The ipset calls take several sets at once: each is one exec of
	// ipset, which costs far more than the work (~100 ms in UML).
	//
	// EnsureIPSets creates the sets that are missing.
	EnsureIPSets([]IPSet) error
	// IPSetEntries reads the entries of the named sets; a missing set is
	// an error wrapping ErrNotFound.
	IPSetEntries(names ...string) (map[string][]string, error)
	// UpdateIPSets deletes del's entries and adds add's, per set name.
	UpdateIPSets(add, del map[string][]string) error

	// EnsureIPTables replaces the contents of our own chains with rules (an
	// iptables-restore text for family) and makes sure every jump exists.
	EnsureIPTables(family v1.IPFamily, jumps []Jump, rules string) error

	// RemoveIPTables deletes the jumps and then our chains (for --cleanup).
	RemoveIPTables(family v1.IPFamily, jumps []Jump, chains map[string][]string) error
	DestroyIPSet(name string) error
	DeleteLink(name string) error

	Sysctl(path string) (string, error)
	SetSysctl(path, value string) error
	SetTimeouts(Timeouts) error
	DeleteConntrack(family v1.IPFamily, f ConntrackFilter) error
}
