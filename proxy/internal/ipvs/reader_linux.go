package ipvs

import (
	"fmt"

	"github.com/vishvananda/netlink"
)

// Reader reads real servers from the kernel over a plain netlink socket of
// its own (the dumper LinuxOS uses), for an observer beside a proxy: the
// benchmark's, which re-reads one virtual server at a time and, on a slow
// kernel (user-mode-linux), must cost the proxy it measures little CPU.
// Not safe for concurrent use.
type Reader struct{ d *dumper }

// NewReader opens the socket in the current network namespace.
func NewReader() (*Reader, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("IPVS generic netlink family: %w", err)
	}
	d, err := newDumper(fam.ID)
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink: %w", err)
	}
	return &Reader{d: d}, nil
}

// RealServers dumps k's real servers; a missing virtual server is an
// error wrapping ErrNotFound.
func (r *Reader) RealServers(k VSKey) ([]RealServer, error) { return r.d.dests(k) }

// Close releases the socket.
func (r *Reader) Close() { r.d.close() }
