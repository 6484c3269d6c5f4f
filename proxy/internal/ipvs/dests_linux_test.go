package ipvs

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// destMessage is a GET_DEST answer as the kernel builds it
// (ip_vs_genl_fill_dest): the address as a 16-byte nf_inet_addr.
func destMessage(addr netip.Addr, port uint16, weight, active, inactive uint32, withAF bool) []byte {
	var a16 [16]byte
	copy(a16[:], addr.AsSlice())
	d := nl.NewRtAttr(ipvsCmdAttrDest|unix.NLA_F_NESTED, nil)
	d.AddRtAttr(ipvsDestAttrAddr, a16[:])
	d.AddRtAttr(ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, port))
	d.AddRtAttr(ipvsDestAttrFwd, nl.Uint32Attr(0))
	d.AddRtAttr(ipvsDestAttrWeight, nl.Uint32Attr(weight))
	d.AddRtAttr(ipvsDestAttrActiveConn, nl.Uint32Attr(active))
	d.AddRtAttr(ipvsDestAttrInactConn, nl.Uint32Attr(inactive))
	if withAF {
		d.AddRtAttr(ipvsDestAttrAF, nl.Uint16Attr(afOf(addr.Is6())))
	}
	return append((&nl.Genlmsg{Command: ipvsCmdNewDest, Version: 1}).Serialize(), d.Serialize()...)
}

func TestParseDest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     []byte
		v6      bool
		want    RealServer
		wantErr bool
	}{{
		name: "IPv4 with family",
		msg:  destMessage(netip.MustParseAddr("10.244.1.2"), 8080, 1, 3, 4, true),
		want: RealServer{Addr: netip.MustParseAddr("10.244.1.2"), Port: 8080, Weight: 1, ActiveConns: 3, InactiveConns: 4},
	}, {
		name: "IPv4, family from the virtual server (kernels before 3.18)",
		msg:  destMessage(netip.MustParseAddr("10.244.1.3"), 80, 0, 0, 0, false),
		want: RealServer{Addr: netip.MustParseAddr("10.244.1.3"), Port: 80},
	}, {
		name: "IPv6",
		msg:  destMessage(netip.MustParseAddr("fd00::5"), 443, 1, 0, 7, true),
		v6:   true,
		want: RealServer{Addr: netip.MustParseAddr("fd00::5"), Port: 443, Weight: 1, InactiveConns: 7},
	}, {
		name:    "truncated",
		msg:     []byte{5, 1},
		wantErr: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDest(tc.msg, tc.v6)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
