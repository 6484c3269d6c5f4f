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
	UpdateVirtualServer(VirtualServer) error
	DeleteVirtualServer(VSKey) error
	RealServers(VSKey) ([]RealServer, error)
	AddRealServer(VSKey, RealServer) error
	UpdateRealServer(VSKey, RealServer) error
	DeleteRealServer(VSKey, RealServer) error

	// EnsureDummy creates the dummy interface (up) if it is missing.
	EnsureDummy(name string) error
	LinkAddrs(name string) ([]netip.Addr, error)
	AddLinkAddr(name string, a netip.Addr) error
	DelLinkAddr(name string, a netip.Addr) error

	EnsureIPSet(IPSet) error
	IPSetEntries(name string) ([]string, error)
	UpdateIPSet(name string, add, del []string) error

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
