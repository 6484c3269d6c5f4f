//go:build tools

// Package tools pins runc, built with CGO_ENABLED=1 -tags seccomp.
package tools

import (
	_ "github.com/opencontainers/runc"
)
