//go:build tools

// Package tools pins containerd v2 and its runc shim, built by the artifacts
// harness (e2e/harness/artifacts) with CGO_ENABLED=0.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
)
