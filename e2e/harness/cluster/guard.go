package cluster

import (
	"context"
	"fmt"

	"sigs.k8s.io/knftables"
)

// AddGuard (re)writes the table inet nodesuite-guard: in the forward and
// postrouting hooks, a packet for the Pod or Service range may only leave
// through the cluster bridge (or lo); anything else, e.g. the uplink, is
// dropped and counted. Not in the output hook: there the uplink is still the
// outgoing device before the proxy's DNAT, which would break host ->
// ClusterIP. Safe to call again: the table is flushed and refilled in one
// transaction.
func AddGuard(ctx context.Context, nft knftables.Interface) error {
	tx := nft.NewTransaction()
	tx.Add(&knftables.Table{Comment: knftables.PtrTo("nodesuite: keep cluster-range packets off the uplink")})
	tx.Flush(&knftables.Table{})
	for _, c := range []struct {
		name string
		hook knftables.BaseChainHook
		prio knftables.BaseChainPriority
	}{
		{"forward", knftables.ForwardHook, knftables.FilterPriority},
		{"postrouting", knftables.PostroutingHook, knftables.SNATPriority},
	} {
		tx.Add(&knftables.Chain{Name: c.name, Type: knftables.PtrTo(knftables.FilterType), Hook: knftables.PtrTo(c.hook), Priority: knftables.PtrTo(c.prio)})
		tx.Add(&knftables.Rule{Chain: c.name, Rule: knftables.Concat("oifname", "{", `"`+BridgeName+`"`, ",", `"lo"`, "}", "accept")})
		tx.Add(&knftables.Rule{Chain: c.name, Rule: knftables.Concat("ip daddr", "{", PodCIDR, ",", ServiceCIDR, "}", "counter", "drop")})
	}
	if err := nft.Run(ctx, tx); err != nil {
		return fmt.Errorf("guard table: %w", err)
	}
	return nil
}

// NewGuardNft is the real nftables handle for the guard table.
func NewGuardNft() (knftables.Interface, error) {
	nft, err := knftables.New(knftables.InetFamily, GuardTable)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return nft, nil
}
