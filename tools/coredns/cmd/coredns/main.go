// Command coredns is upstream CoreDNS with only the plugins a cluster's DNS
// needs, which keeps the build to minutes instead of pulling every cloud SDK.
package main

import (
	"github.com/coredns/coredns/coremain"

	// The dnsserver must be imported before the plugins register with it.
	_ "github.com/coredns/coredns/core/dnsserver"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
