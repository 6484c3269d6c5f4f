package cluster

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"
)

func TestAddGuard(t *testing.T) {
	nft := knftables.NewFake(knftables.InetFamily, GuardTable)
	// Twice: the second run must replace, not duplicate, the rules.
	for i := 0; i < 2; i++ {
		if err := AddGuard(context.Background(), nft); err != nil {
			t.Fatal(err)
		}
	}
	// (knftables' fake does not render the table comment.)
	want := `add table inet nodesuite-guard
add chain inet nodesuite-guard forward { type filter hook forward priority 0 ; }
add chain inet nodesuite-guard postrouting { type filter hook postrouting priority 100 ; }
add rule inet nodesuite-guard forward oifname { "nodesuite0" , "lo" } accept
add rule inet nodesuite-guard forward ip daddr { 10.244.0.0/16 , 10.96.0.0/16 } counter drop
add rule inet nodesuite-guard postrouting oifname { "nodesuite0" , "lo" } accept
add rule inet nodesuite-guard postrouting ip daddr { 10.244.0.0/16 , 10.96.0.0/16 } counter drop
`
	if d := cmp.Diff(strings.Split(want, "\n"), strings.Split(nft.Dump(), "\n")); d != "" {
		t.Errorf("guard table (-want +got):\n%s", d)
	}
}
