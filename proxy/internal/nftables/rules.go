package nftables

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// Names of the fixed objects, as upstream kube-proxy's nftables mode.
const (
	clusterIPsSet         = "cluster-ips"
	nodePortIPsSet        = "nodeport-ips"
	hairpinSet            = "hairpin-connections"
	serviceIPsMap         = "service-ips"
	serviceNodePortsMap   = "service-nodeports"
	noEndpointServicesMap = "no-endpoint-services"
	noEndpointNodePorts   = "no-endpoint-nodeports"
	firewallIPsMap        = "firewall-ips"

	servicesChain         = "services"
	masqueradingChain     = "masquerading"
	serviceEPCheckChain   = "service-endpoints-check"
	nodePortEPCheckChain  = "nodeport-endpoints-check"
	firewallCheckChain    = "firewall-check"
	clusterIPsCheckChain  = "cluster-ips-check"
	rejectChain           = "reject-chain"
	affinityPrefix        = "aff-"
	clusterChainPrefix    = "svc-"
	localChainPrefix      = "local-"
	externalChainPrefix   = "ext-"
	firewallChainPrefix   = "fw-"
	endpointChainPrefix   = "ep-"
	tableComment          = "nodesuite proxy: Service rules"
	noEndpointsRejectVerd = "goto " + rejectChain
)

// familyRules holds the per-family spellings.
type familyRules struct {
	family     v1.IPFamily
	ipX        string // "ip" or "ip6"
	addrType   string // "ipv4_addr" or "ipv6_addr"
	masqMark   string
	masqRule   string
	clusterSrc []string // the family's cluster CIDRs, ready for a { } set
	masqAll    bool
}

func newFamilyRules(f v1.IPFamily, cfg Config) *familyRules {
	r := &familyRules{family: f, ipX: "ip", addrType: "ipv4_addr"}
	if f == v1.IPv6Protocol {
		r.ipX, r.addrType = "ip6", "ipv6_addr"
	}
	r.masqMark = fmt.Sprintf("0x%x", uint32(1)<<*cfg.MasqueradeBit)
	r.masqRule = "mark set mark or " + r.masqMark
	for _, p := range cfg.ClusterCIDRs {
		if familyOf(p.Addr()) == f {
			if len(r.clusterSrc) > 0 {
				r.clusterSrc = append(r.clusterSrc, ",")
			}
			r.clusterSrc = append(r.clusterSrc, p.Masked().String())
		}
	}
	r.masqAll = cfg.MasqueradeAll
	return r
}

func (r *familyRules) fixed() []fixedContainer {
	svcKey := r.addrType + " . inet_proto . inet_service : verdict"
	portKey := "inet_proto . inet_service : verdict"
	return []fixedContainer{
		{name: clusterIPsSet, typ: r.addrType},
		{name: nodePortIPsSet, typ: r.addrType},
		{name: hairpinSet, typ: r.addrType + " . " + r.addrType + " . inet_proto . inet_service"},
		{name: serviceIPsMap, isMap: true, typ: svcKey},
		{name: serviceNodePortsMap, isMap: true, typ: portKey},
		{name: noEndpointServicesMap, isMap: true, typ: svcKey},
		{name: noEndpointNodePorts, isMap: true, typ: portKey},
		{name: firewallIPsMap, isMap: true, typ: svcKey},
	}
}

func baseChain(name string, t knftables.BaseChainType, h knftables.BaseChainHook, p knftables.BaseChainPriority) *chainDef {
	return &chainDef{name: name, base: &knftables.Chain{Name: name, Type: &t, Hook: &h, Priority: &p}}
}

// global is the scaffolding every table has: base chains hooked into
// netfilter, the dispatch chains, and the NodePort addresses.
//
// Hook priorities are the standard ones (dstnat, srcnat, filter), as
// kube-proxy: a guard table that drops Pod/Service-range packets on the
// uplink in forward/postrouting still sees every packet, since a verdict in
// one table does not end the evaluation in another.
func (r *familyRules) global(nodeIPs []netip.Addr) *fragment {
	f := newFragment()
	ctNew := "ct state new"
	pre := knftables.DNATPriority + "-10"
	add := func(c *chainDef, rules ...string) { c.rules = rules; f.chain(c) }
	add(baseChain("filter-prerouting-pre-dnat", knftables.FilterType, knftables.PreroutingHook, pre),
		ctNew+" jump "+firewallCheckChain)
	add(baseChain("filter-output-pre-dnat", knftables.FilterType, knftables.OutputHook, pre),
		ctNew+" jump "+firewallCheckChain)
	add(baseChain("filter-input", knftables.FilterType, knftables.InputHook, knftables.FilterPriority),
		ctNew+" jump "+nodePortEPCheckChain,
		ctNew+" jump "+serviceEPCheckChain)
	add(baseChain("filter-forward", knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority),
		// As kube-proxy's KUBE-FORWARD: a packet conntrack calls invalid
		// would otherwise be forwarded un-NATed to a Pod.
		"ct state invalid drop",
		ctNew+" jump "+serviceEPCheckChain,
		ctNew+" jump "+clusterIPsCheckChain)
	add(baseChain("filter-output", knftables.FilterType, knftables.OutputHook, knftables.FilterPriority),
		ctNew+" jump "+serviceEPCheckChain,
		ctNew+" jump "+clusterIPsCheckChain)
	add(baseChain("nat-prerouting", knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority),
		"jump "+servicesChain)
	add(baseChain("nat-output", knftables.NATType, knftables.OutputHook, knftables.DNATPriority),
		"jump "+servicesChain)
	add(baseChain("nat-postrouting", knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority),
		"jump "+masqueradingChain)

	svc := f.chain(newChain(servicesChain))
	switch {
	case r.masqAll:
		svc.add(r.ipX, "daddr", "@", clusterIPsSet, r.masqRule)
	case len(r.clusterSrc) > 0:
		svc.add(r.ipX, "daddr", "@", clusterIPsSet, r.ipX, "saddr", "!=", "{", r.clusterSrc, "}", r.masqRule)
	}
	svc.add(r.ipX, "daddr . meta l4proto . th dport vmap @", serviceIPsMap)
	svc.add(r.ipX, "daddr @", nodePortIPsSet, "meta l4proto . th dport vmap @", serviceNodePortsMap)

	masq := f.chain(newChain(masqueradingChain))
	masq.add("mark and", r.masqMark, "!= 0 mark set mark xor", r.masqMark, "masquerade fully-random")
	masq.add("ct status dnat", r.ipX, "saddr .", r.ipX, "daddr . meta l4proto . th dport @", hairpinSet, "masquerade fully-random")

	f.chain(newChain(serviceEPCheckChain)).add(r.ipX, "daddr . meta l4proto . th dport vmap @", noEndpointServicesMap)
	f.chain(newChain(nodePortEPCheckChain)).add(r.ipX, "daddr @", nodePortIPsSet, "meta l4proto . th dport vmap @", noEndpointNodePorts)
	f.chain(newChain(firewallCheckChain)).add(r.ipX, "daddr . meta l4proto . th dport vmap @", firewallIPsMap)
	// A ClusterIP on a port no Service has: refuse rather than let it hang.
	f.chain(newChain(clusterIPsCheckChain)).add(r.ipX, "daddr @", clusterIPsSet, "reject")
	// Services without endpoints: a TCP reset or ICMP port unreachable,
	// i.e. "connection refused" for the client.
	f.chain(newChain(rejectChain, "meta l4proto tcp reject with tcp reset", "reject"))

	for _, ip := range nodeIPs {
		if familyOf(ip) != r.family || ip.IsLoopback() {
			continue
		}
		f.elem(nodePortIPsSet, false, []string{ip.Unmap().String()})
	}
	for _, c := range f.chains {
		c.computeHash()
	}
	return f
}

// svcNames are the per-Service-port object names. They are readable
// (namespace/name/protocol/port) so `nft list table` is debuggable; the
// family is implied by the table.
type svcNames struct {
	base                       string
	cluster, local, ext, fw    string
	proto                      string
	clusterIP                  netip.Addr
	port                       string
	endpointChain, affinitySet func(ep servicestate.Endpoint) string
	stickySeconds              int32
}

func namesFor(k servicestate.Key, sp *servicestate.ServicePort) *svcNames {
	port := k.Name.Port
	if port == "" {
		port = "_"
	}
	proto := strings.ToLower(string(k.Name.Protocol))
	base := k.Name.Namespace + "/" + k.Name.Name + "/" + proto + "/" + port
	n := &svcNames{
		base:          base,
		cluster:       clusterChainPrefix + base,
		local:         localChainPrefix + base,
		ext:           externalChainPrefix + base,
		fw:            firewallChainPrefix + base,
		proto:         proto,
		clusterIP:     sp.ClusterIP,
		port:          strconv.Itoa(int(sp.Port)),
		stickySeconds: sp.StickyMaxAgeSeconds,
	}
	epPart := func(ep servicestate.Endpoint) string {
		// ':' is not allowed in nft names; '.' keeps IPv6 readable.
		return strings.ReplaceAll(ep.IP.String(), ":", ".") + "/" + strconv.Itoa(int(ep.Port))
	}
	n.endpointChain = func(ep servicestate.Endpoint) string { return endpointChainPrefix + base + "__" + epPart(ep) }
	// The timeout is part of the set's name: a changed timeout is a new set,
	// not an in-place change nft would refuse.
	n.affinitySet = func(ep servicestate.Endpoint) string {
		return fmt.Sprintf("%s%s__%s/t%d", affinityPrefix, base, epPart(ep), sp.StickyMaxAgeSeconds)
	}
	return n
}

func epAddr(ep servicestate.Endpoint) string {
	return netip.AddrPortFrom(ep.IP.Unmap(), uint16(ep.Port)).String()
}

// servicePort builds one Service port's fragment, after kube-proxy's
// nftables syncProxyRules: cluster and local policy chains holding the
// DNATs, an external chain for NodePort/external/LoadBalancer traffic, a
// firewall chain for loadBalancerSourceRanges, and the dispatch elements.
// cluster are the endpoints for Cluster policy, local those on this node.
func (r *familyRules) servicePort(k servicestate.Key, sp *servicestate.ServicePort, cluster, local []servicestate.Endpoint, nodeIPs []netip.Addr) *fragment {
	f := newFragment()
	n := namesFor(k, sp)
	ipX := r.ipX

	externallyAccessible := sp.NodePort != 0 || len(sp.ExternalIPs) > 0 || len(sp.LoadBalancerIPs) > 0
	hasEndpoints := len(cluster) > 0
	usesCluster := hasEndpoints && (!sp.InternalPolicyLocal || externallyAccessible)
	usesLocal := len(local) > 0 && (sp.InternalPolicyLocal || (externallyAccessible && sp.ExternalPolicyLocal))

	internalChain, hasInternal := n.cluster, hasEndpoints
	if sp.InternalPolicyLocal {
		internalChain, hasInternal = n.local, len(local) > 0
	}
	externalPolicyChain, hasExternal := n.cluster, hasEndpoints
	if sp.ExternalPolicyLocal {
		externalPolicyChain, hasExternal = n.local, len(local) > 0
	}
	usesExt := hasEndpoints && externallyAccessible

	// Verdicts for the filter-hook "no endpoints" maps: reject when the
	// Service has no endpoints at all, drop when only the policy leaves none.
	internalNoEP, externalNoEP := "drop", "drop"
	if !hasEndpoints {
		internalNoEP, externalNoEP = noEndpointsRejectVerd, noEndpointsRejectVerd
	}

	svcKey := func(ip netip.Addr) []string { return []string{ip.Unmap().String(), n.proto, n.port} }
	if sp.ClusterIP.IsValid() {
		f.elem(clusterIPsSet, false, []string{sp.ClusterIP.Unmap().String()})
		if hasInternal {
			f.elem(serviceIPsMap, true, svcKey(sp.ClusterIP), "goto "+internalChain)
		} else {
			f.elem(noEndpointServicesMap, true, svcKey(sp.ClusterIP), internalNoEP)
		}
	}
	externalIPs := append(append([]netip.Addr{}, sp.ExternalIPs...), sp.LoadBalancerIPs...)
	for _, ip := range externalIPs {
		if familyOf(ip) != r.family {
			continue
		}
		if usesExt {
			f.elem(serviceIPsMap, true, svcKey(ip), "goto "+n.ext)
		}
		if !hasExternal {
			f.elem(noEndpointServicesMap, true, svcKey(ip), externalNoEP)
		}
	}
	var sources []string
	for _, p := range sp.LoadBalancerSourceRanges {
		if familyOf(p.Addr()) != r.family {
			continue
		}
		if len(sources) > 0 {
			sources = append(sources, ",")
		}
		sources = append(sources, p.Masked().String())
	}
	var lbIPs []netip.Addr
	for _, ip := range sp.LoadBalancerIPs {
		if familyOf(ip) == r.family {
			lbIPs = append(lbIPs, ip)
		}
	}
	if len(lbIPs) > 0 && len(sources) > 0 {
		fw := f.chain(newChain(n.fw))
		// A request from this node to its own LoadBalancer IP comes back
		// with the LB IP as source: allow it when the node is allowed.
		allowNode := false
		for _, p := range sp.LoadBalancerSourceRanges {
			for _, ip := range nodeIPs {
				if p.Contains(ip) {
					allowNode = true
				}
			}
		}
		if allowNode {
			for _, ip := range lbIPs {
				sources = append(sources, ",", ip.Unmap().String())
			}
		}
		fw.add(ipX, "saddr != {", sources, "} drop")
		for _, ip := range lbIPs {
			f.elem(firewallIPsMap, true, svcKey(ip), "goto "+n.fw)
		}
	}
	if sp.NodePort != 0 {
		npKey := []string{n.proto, strconv.Itoa(int(sp.NodePort))}
		if usesExt {
			f.elem(serviceNodePortsMap, true, npKey, "goto "+n.ext)
		}
		if !hasExternal {
			f.elem(noEndpointNodePorts, true, npKey, externalNoEP)
		}
	}

	if usesExt {
		ext := f.chain(newChain(n.ext))
		if !sp.ExternalPolicyLocal {
			// Endpoints may be on other nodes: masquerade so replies come back.
			ext.add(r.masqRule)
		} else {
			if len(r.clusterSrc) > 0 {
				// Pod -> external address is not subject to the policy, as
				// if it went out to the load balancer and came back.
				ext.add(ipX, "saddr {", r.clusterSrc, "} goto", n.cluster)
			}
			// The node itself: its source is a local address, masquerade.
			ext.add("fib saddr type local", r.masqRule)
			ext.add("fib saddr type local goto", n.cluster)
		}
		if hasExternal {
			ext.add("goto", externalPolicyChain)
		}
	}

	// Endpoint chains and affinity sets, only with session affinity.
	sticky := sp.StickyMaxAgeSeconds > 0
	seen := map[string]bool{}
	for _, eps := range [][]servicestate.Endpoint{cluster, local} {
		for _, ep := range eps {
			a := epAddr(ep)
			if seen[a] {
				continue
			}
			seen[a] = true
			if ep.IsLocal {
				f.elem(hairpinSet, false, []string{ep.IP.Unmap().String(), ep.IP.Unmap().String(), n.proto, strconv.Itoa(int(ep.Port))})
			}
			if !sticky {
				continue
			}
			set := n.affinitySet(ep)
			f.sets[set] = &knftables.Set{
				Name: set,
				Type: r.addrType,
				// "dynamic" as upstream: some kernels add it on their own and
				// a later add without it would look like a change.
				Flags:   []knftables.SetFlag{knftables.DynamicFlag, knftables.TimeoutFlag},
				Timeout: knftables.PtrTo(time.Duration(sp.StickyMaxAgeSeconds) * time.Second),
			}
			c := f.chain(newChain(n.endpointChain(ep)))
			c.add("update @", set, "{", ipX, "saddr }")
			c.add("meta l4proto", n.proto, "dnat to", a)
		}
	}
	if usesCluster {
		r.endpointRules(f.chain(newChain(n.cluster)), n, cluster)
	}
	if usesLocal {
		r.endpointRules(f.chain(newChain(n.local)), n, local)
	}
	for _, c := range f.chains {
		c.computeHash()
	}
	return f
}

// endpointRules writes the load-balancing rules of a policy chain: a DNAT
// to each endpoint, or with session affinity a jump to the endpoint the
// client was last sent to, then a jump to an endpoint chain. Endpoint i of N
// is taken with probability 1/(N-i) when none before it was, which is
// uniform. kube-proxy uses one "numgen random mod N map { ... }" instead,
// but every such anonymous map is a kernel set, and adding thousands of
// them is quadratic: a first sync of 10,000 Services x 10 endpoints took
// ~80 s in nft that way, ~23 s with this cascade (nft 1.0.6, kernel 6.18,
// BenchmarkFullSync on a loaded 2-core machine).
func (r *familyRules) endpointRules(c *chainDef, n *svcNames, eps []servicestate.Endpoint) {
	pick := func(i int) []string {
		if i == len(eps)-1 {
			return nil
		}
		return []string{"numgen random mod", strconv.Itoa(len(eps) - i), "== 0"}
	}
	if n.stickySeconds > 0 {
		for _, ep := range eps {
			c.add(r.ipX, "saddr @", n.affinitySet(ep), "goto", n.endpointChain(ep))
		}
		for i, ep := range eps {
			c.add(pick(i), "goto", n.endpointChain(ep))
		}
		return
	}
	for i, ep := range eps {
		c.add("meta l4proto", n.proto, pick(i), "dnat to", epAddr(ep))
	}
}
