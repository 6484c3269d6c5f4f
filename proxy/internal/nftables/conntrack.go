package nftables

import (
	"net/netip"

	v1 "k8s.io/api/core/v1"
)

// ConntrackFilter selects UDP conntrack entries to delete. A zero address
// matches any address.
type ConntrackFilter struct {
	OrigDstIP   netip.Addr
	OrigDstPort uint16
	ReplySrcIP  netip.Addr
}

// Conntrack deletes stale UDP conntrack entries: without that, a UDP client
// that keeps sending keeps hitting a removed endpoint (or the reject of a
// Service that had none), since NAT is decided only for a flow's first packet.
type Conntrack interface {
	DeleteUDP(family v1.IPFamily, filters []ConntrackFilter) error
}
