//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench-proxy-nftables needs Linux (network namespaces, nftables)")
	os.Exit(1)
}
