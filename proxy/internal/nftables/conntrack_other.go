//go:build !linux

package nftables

import (
	"errors"

	v1 "k8s.io/api/core/v1"
)

type unsupportedConntrack struct{}

// NewNetlinkConntrack returns a Conntrack that fails: conntrack is Linux-only.
func NewNetlinkConntrack() Conntrack { return unsupportedConntrack{} }

func (unsupportedConntrack) DeleteUDP(v1.IPFamily, []ConntrackFilter) error {
	return errors.New("conntrack: not supported on this OS")
}
