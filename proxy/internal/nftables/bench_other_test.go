//go:build !linux

package nftables

import "testing"

func realNFTTarget(b *testing.B) *benchTarget {
	b.Skip("real nftables needs Linux")
	return nil
}
