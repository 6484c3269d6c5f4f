//go:build tools

// Package tools pins cri-tools: crictl is built with go build; critest is a
// test binary, built with `go test -c ./cmd/critest` in a writable copy of the
// module (see e2e/harness/artifacts).
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
)
