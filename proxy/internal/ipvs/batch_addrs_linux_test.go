package ipvs

import (
	"errors"
	"net/netip"
	"sort"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The batcher against the host kernel's rtnetlink (no IPVS needed):
// addresses bound in several batches, one already bound is no error, and
// a batch whose every request fails reports each one. In a network
// namespace of its own; needs root.
func TestAddAddrsBatched(t *testing.T) {
	inNewNetNS(t)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nsbatch0"}, PeerName: "nsbatch1"}); err != nil {
		t.Skipf("no veth: %v", err)
	}
	link, err := netlink.LinkByName("nsbatch0")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := netlinkSocket(unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	b := &batcher{fd: -1, routeFD: fd, buf: make([]byte, 1<<16)}
	defer unix.Close(fd)

	var want []string
	var as []netip.Addr
	for i := range 2*batchMax + 5 {
		a := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
		as = append(as, a)
		want = append(want, a.String())
	}
	as = append(as, netip.MustParseAddr("fd00::5"), as[3]) // and one again
	want = append(want, "fd00::5")
	if err := b.addAddrs(link.Attrs().Index, as[:10]); err != nil {
		t.Fatal(err)
	}
	if err := b.addAddrs(link.Attrs().Index, as); err != nil {
		t.Fatalf("bind (some already bound): %v", err)
	}
	l := &LinuxOS{}
	got, err := l.LinkAddrs("nsbatch0")
	if err != nil {
		t.Fatal(err)
	}
	var gotS []string
	for _, a := range got {
		if !a.IsLinkLocalUnicast() {
			gotS = append(gotS, a.String())
		}
	}
	sort.Strings(want)
	sort.Strings(gotS)
	if d := cmp.Diff(want, gotS); d != "" {
		t.Errorf("addresses (-want +got):\n%s", d)
	}

	// No such interface: every request of both batches fails, each named.
	err = b.addAddrs(1<<20, as[:batchMax+2])
	var n int
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			if inner, ok := e.(interface{ Unwrap() []error }); ok {
				n += len(inner.Unwrap())
			} else {
				n++
			}
		}
	}
	if !errors.Is(err, syscall.ENODEV) || n != batchMax+2 {
		t.Errorf("bind on a missing interface: %d errors (want %d, ENODEV): %v", n, batchMax+2, err)
	}
}
