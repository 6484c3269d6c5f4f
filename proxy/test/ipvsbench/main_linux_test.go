package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	pipvs "github.com/nodesuite/nodesuite/proxy/internal/ipvs"
)

// As Linux 6.1's ip_vs_info_seq_show prints it.
const procIPVS = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600001:0050 rr
  -> 0AF40002:1F90      Masq    1      0          0
  -> 0AF40103:1F90      Masq    0      2          1
UDP  0A60000A:0035 rr persistent 10800
FWM  00000001 rr
  -> 0A000001:0000      Masq    1      0          0
TCP  [fd00:0000:0000:0000:0000:0000:0000:0010]:01BB sh
  -> [fd01:0000:0000:0000:0000:0000:0000:0002]:2000      Masq    1      0          0
`

func TestParseProcIPVS(t *testing.T) {
	got, err := parseProcIPVS(strings.NewReader(procIPVS))
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := map[pipvs.VSKey][]netip.AddrPort{
		{Protocol: v1.ProtocolTCP, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}:  {ap("10.244.0.2:8080"), ap("10.244.1.3:8080")},
		{Protocol: v1.ProtocolUDP, Addr: netip.MustParseAddr("10.96.0.10"), Port: 53}: {},
		{Protocol: v1.ProtocolTCP, Addr: netip.MustParseAddr("fd00::10"), Port: 443}:  {ap("[fd01::2]:8192")},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := parseProcIPVS(strings.NewReader("TCP  0A6000:0050 rr\n")); err == nil {
		t.Errorf("short address: no error")
	}
}

func TestExactly(t *testing.T) {
	ap := netip.MustParseAddrPort
	want := map[netip.AddrPort]bool{ap("10.0.0.1:80"): true, ap("10.0.0.2:80"): true}
	for _, tc := range []struct {
		name string
		aps  []netip.AddrPort
		ok   bool
	}{
		{"same", []netip.AddrPort{ap("10.0.0.2:80"), ap("10.0.0.1:80")}, true},
		{"one missing", []netip.AddrPort{ap("10.0.0.1:80")}, false},
		{"one too many", []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.2:80"), ap("10.0.0.3:80")}, false},
		{"one other", []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.3:80")}, false},
	} {
		if got := exactlyAPs(tc.aps, want); got != tc.ok {
			t.Errorf("%s: exactlyAPs = %v", tc.name, got)
		}
		var rs []pipvs.RealServer
		for _, a := range tc.aps {
			rs = append(rs, pipvs.RealServer{Addr: a.Addr(), Port: a.Port()})
		}
		if got := exactly(rs, want); got != tc.ok {
			t.Errorf("%s: exactly = %v", tc.name, got)
		}
	}
}
