package ipvs

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// The requests as vishvananda/netlink's nl types build them (what this
// package sent before msgBuf, and what moby/ipvs sends): msgBuf must
// produce the same bytes.
func nlServiceAttr(k VSKey) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrService, nil)
	a.AddRtAttr(ipvsSvcAttrAF, nl.Uint16Attr(afOf(k.Addr.Is6())))
	a.AddRtAttr(ipvsSvcAttrProtocol, nl.Uint16Attr(protoNum[k.Protocol]))
	a.AddRtAttr(ipvsSvcAttrAddr, k.Addr.AsSlice())
	a.AddRtAttr(ipvsSvcAttrPort, be16(k.Port))
	return a
}

func nlDestAttr(r RealServer) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDest, nil)
	a.AddRtAttr(ipvsDestAttrAddr, r.Addr.AsSlice())
	a.AddRtAttr(ipvsDestAttrPort, be16(r.Port))
	a.AddRtAttr(ipvsDestAttrFwd, nl.Uint32Attr(0))
	a.AddRtAttr(ipvsDestAttrWeight, nl.Uint32Attr(uint32(r.Weight)))
	a.AddRtAttr(ipvsDestAttrUThresh, nl.Uint32Attr(0))
	a.AddRtAttr(ipvsDestAttrLThresh, nl.Uint32Attr(0))
	a.AddRtAttr(ipvsDestAttrAF, nl.Uint16Attr(afOf(r.Addr.Is6())))
	return a
}

func nlNewService(vs VirtualServer) *nl.RtAttr {
	a := nlServiceAttr(vs.VSKey)
	a.AddRtAttr(ipvsSvcAttrSched, nl.ZeroTerminated(vs.Scheduler))
	var flags uint32
	if vs.Timeout > 0 {
		flags = 1
	}
	a.AddRtAttr(ipvsSvcAttrFlags, binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, flags), 0xffffffff))
	a.AddRtAttr(ipvsSvcAttrTimeout, nl.Uint32Attr(vs.Timeout))
	mask := uint32(0xffffffff)
	if vs.Addr.Is6() {
		mask = 128
	}
	a.AddRtAttr(ipvsSvcAttrNetmask, nl.Uint32Attr(mask))
	return a
}

func TestMsgBufMatchesNl(t *testing.T) {
	const fam, seq = 0x23, 77
	v4 := VSKey{Protocol: v1.ProtocolTCP, Addr: netip.MustParseAddr("10.96.0.10"), Port: 80}
	v6 := VSKey{Protocol: v1.ProtocolUDP, Addr: netip.MustParseAddr("fd00::10"), Port: 53}
	r4 := RealServer{Addr: netip.MustParseAddr("10.244.1.2"), Port: 8080, Weight: 1}
	r6 := RealServer{Addr: netip.MustParseAddr("fd01::2"), Port: 5353}
	addrMsg := func(a netip.Addr) []nl.NetlinkRequestData {
		f, bits := unix.AF_INET, 32
		if a.Is6() {
			f, bits = unix.AF_INET6, 128
		}
		msg := nl.NewIfAddrmsg(f)
		msg.Index, msg.Prefixlen = 7, uint8(bits)
		return []nl.NetlinkRequestData{msg, nl.NewRtAttr(unix.IFA_LOCAL, a.AsSlice()), nl.NewRtAttr(unix.IFA_ADDRESS, a.AsSlice())}
	}
	for _, tc := range []struct {
		name  string
		typ   int
		flags int
		data  []nl.NetlinkRequestData
		enc   func(m *msgBuf)
	}{{
		name: "new service, IPv4, persistent, rr",
		typ:  fam, flags: unix.NLM_F_ACK,
		data: []nl.NetlinkRequestData{&nl.Genlmsg{Command: ipvsCmdNewService, Version: 1},
			nlNewService(VirtualServer{VSKey: v4, Scheduler: "rr", Timeout: 10800})},
		enc: func(m *msgBuf) { m.newService(VirtualServer{VSKey: v4, Scheduler: "rr", Timeout: 10800}) },
	}, {
		name: "new service, IPv6 UDP, wlc (odd name length)",
		typ:  fam,
		data: []nl.NetlinkRequestData{&nl.Genlmsg{Command: ipvsCmdNewService, Version: 1},
			nlNewService(VirtualServer{VSKey: v6, Scheduler: "wlc"})},
		enc: func(m *msgBuf) { m.newService(VirtualServer{VSKey: v6, Scheduler: "wlc"}) },
	}, {
		name: "new dest, IPv4",
		typ:  fam, flags: unix.NLM_F_ACK,
		data: []nl.NetlinkRequestData{&nl.Genlmsg{Command: ipvsCmdNewDest, Version: 1}, nlServiceAttr(v4), nlDestAttr(r4)},
		enc:  func(m *msgBuf) { m.genl(ipvsCmdNewDest); m.endNest(m.service(v4)); m.dest(r4) },
	}, {
		name: "set dest, IPv6, weight 0",
		typ:  fam,
		data: []nl.NetlinkRequestData{&nl.Genlmsg{Command: ipvsCmdSetDest, Version: 1}, nlServiceAttr(v6), nlDestAttr(r6)},
		enc:  func(m *msgBuf) { m.genl(ipvsCmdSetDest); m.endNest(m.service(v6)); m.dest(r6) },
	}, {
		name: "get dest dump",
		typ:  fam, flags: unix.NLM_F_DUMP,
		data: []nl.NetlinkRequestData{&nl.Genlmsg{Command: ipvsCmdGetDest, Version: 1}, nlServiceAttr(v4)},
		enc:  func(m *msgBuf) { m.genl(ipvsCmdGetDest); m.endNest(m.service(v4)) },
	}, {
		name: "new address, IPv4",
		typ:  unix.RTM_NEWADDR, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL | unix.NLM_F_ACK,
		data: addrMsg(netip.MustParseAddr("10.96.3.4")),
		enc: func(m *msgBuf) {
			m.b = append(m.b, unix.AF_INET, 32, 0, 0)
			m.u32(7)
			m.attrAddr(unix.IFA_LOCAL, netip.MustParseAddr("10.96.3.4"))
			m.attrAddr(unix.IFA_ADDRESS, netip.MustParseAddr("10.96.3.4"))
		},
	}, {
		name: "new address, IPv6",
		typ:  unix.RTM_NEWADDR, flags: unix.NLM_F_CREATE | unix.NLM_F_EXCL,
		data: addrMsg(netip.MustParseAddr("fd00::99")),
		enc: func(m *msgBuf) {
			m.b = append(m.b, unix.AF_INET6, 128, 0, 0)
			m.u32(7)
			m.attrAddr(unix.IFA_LOCAL, netip.MustParseAddr("fd00::99"))
			m.attrAddr(unix.IFA_ADDRESS, netip.MustParseAddr("fd00::99"))
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			req := nl.NewNetlinkRequest(tc.typ, tc.flags)
			req.Seq = seq
			for _, d := range tc.data {
				req.AddData(d)
			}
			want := req.Serialize()
			if _, genl := tc.data[0].(*nl.Genlmsg); genl {
				// nl.Genlmsg serializes its 2-byte struct as the 4-byte
				// genlmsghdr, so "reserved" is whatever memory follows it
				// (the kernel ignores it); msgBuf sends zeros.
				want[18], want[19] = 0, 0
			}
			// After another message, as in a batch: alignment must hold.
			m := msgBuf{b: []byte{1, 2, 3, 4}}
			h := m.begin(uint16(tc.typ), uint16(tc.flags|unix.NLM_F_REQUEST), seq)
			tc.enc(&m)
			m.end(h)
			if d := cmp.Diff(want, m.b[4:]); d != "" {
				t.Errorf("bytes (-nl +msgBuf):\n%s", d)
			}
		})
	}
}
