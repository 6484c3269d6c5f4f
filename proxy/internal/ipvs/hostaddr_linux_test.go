package ipvs

import (
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
)

// HostAddresses (per-link dumps the kernel filters) must list what
// netlink.AddrList (one dump filtered here) lists, on this host's real
// interfaces. Other processes may change addresses between the two
// listings, so a difference is retried a few times.
func TestHostAddressesMatchesAddrList(t *testing.T) {
	var d string
	for range 3 {
		if d = hostAddressesDiff(t); d == "" {
			return
		}
	}
	t.Errorf("HostAddresses (-AddrList +got):\n%s", d)
}

func hostAddressesDiff(t *testing.T) string {
	got, err := HostAddresses()
	if err != nil {
		t.Fatal(err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Addr
	for _, l := range links {
		if l.Attrs().Name == DummyName {
			continue
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				want = append(want, ip.Unmap())
			}
		}
	}
	less := func(s []netip.Addr) { sort.Slice(s, func(i, j int) bool { return s[i].Less(s[j]) }) }
	less(got)
	less(want)
	if len(want) == 0 {
		t.Skip("no addresses on this host")
	}
	return cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }))
}
