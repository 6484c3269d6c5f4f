package nftables

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"
)

// Cleanup deletes the proxy's table in each family (kube-proxy --cleanup).
// nfts gives the interface per family; a missing one gets knftables.New.
// A table that is not there is not an error.
func Cleanup(ctx context.Context, tableName string, families []v1.IPFamily, nfts map[v1.IPFamily]knftables.Interface) error {
	if tableName == "" {
		tableName = DefaultTableName
	}
	for _, f := range families {
		nft := nfts[f]
		if nft == nil {
			var err error
			if nft, err = knftables.New(nftFamily(f), tableName); err != nil {
				return fmt.Errorf("nftables for %s: %w", f, err)
			}
		}
		// add+delete: deleting alone fails when the table does not exist.
		tx := nft.NewTransaction()
		tx.Add(&knftables.Table{})
		tx.Delete(&knftables.Table{})
		if err := nft.Run(ctx, tx); err != nil {
			return fmt.Errorf("deleting table %s %s: %w", nftFamily(f), tableName, err)
		}
	}
	return nil
}
