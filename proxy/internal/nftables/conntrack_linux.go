package nftables

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// netlinkConntrack deletes conntrack entries through netlink.
type netlinkConntrack struct{}

// NewNetlinkConntrack returns the Conntrack New uses by default.
func NewNetlinkConntrack() Conntrack { return netlinkConntrack{} }

func (netlinkConntrack) DeleteUDP(family v1.IPFamily, filters []ConntrackFilter) error {
	if len(filters) == 0 {
		return nil
	}
	fam := netlink.InetFamily(unix.AF_INET)
	if family == v1.IPv6Protocol {
		fam = netlink.InetFamily(unix.AF_INET6)
	}
	nf := make([]netlink.CustomConntrackFilter, 0, len(filters))
	for _, f := range filters {
		c := &netlink.ConntrackFilter{}
		if err := c.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return fmt.Errorf("conntrack filter: %w", err)
		}
		if f.OrigDstIP.IsValid() {
			if err := c.AddIP(netlink.ConntrackOrigDstIP, net.IP(f.OrigDstIP.Unmap().AsSlice())); err != nil {
				return fmt.Errorf("conntrack filter: %w", err)
			}
		}
		if f.OrigDstPort != 0 {
			if err := c.AddPort(netlink.ConntrackOrigDstPort, f.OrigDstPort); err != nil {
				return fmt.Errorf("conntrack filter: %w", err)
			}
		}
		if f.ReplySrcIP.IsValid() {
			if err := c.AddIP(netlink.ConntrackReplySrcIP, net.IP(f.ReplySrcIP.Unmap().AsSlice())); err != nil {
				return fmt.Errorf("conntrack filter: %w", err)
			}
		}
		nf = append(nf, c)
	}
	if _, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, fam, nf...); err != nil {
		return fmt.Errorf("deleting conntrack entries: %w", err)
	}
	return nil
}
