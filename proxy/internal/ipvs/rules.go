package ipvs

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// Names of our ipsets and chains. They are our own (not kube-proxy's KUBE-*)
// so that a node moving from kube-proxy to this proxy never has two owners
// of one object.
const (
	setClusterIP    = "NSP-CLUSTER-IP"
	setLoopBack     = "NSP-LOOP-BACK"
	setExternalIP   = "NSP-EXTERNAL-IP"
	setExternalLoc  = "NSP-EXTERNAL-IP-LOCAL"
	setLB           = "NSP-LOAD-BALANCER"
	setLBLocal      = "NSP-LOAD-BALANCER-LOCAL"
	setLBFW         = "NSP-LOAD-BALANCER-FW"
	setLBSourceCIDR = "NSP-LOAD-BALANCER-SRC-CIDR"
	setNodePort     = "NSP-NODE-PORT-" // + protocol
	setNodePortLoc  = "NSP-NODE-PORT-LOCAL-"
	setHealthCheck  = "NSP-HEALTH-CHECK-NODE-PORT"

	chainServices    = "NSP-SERVICES"
	chainPostrouting = "NSP-POSTROUTING"
	chainMarkMasq    = "NSP-MARK-MASQ"
	chainNodePort    = "NSP-NODE-PORT"
	chainLB          = "NSP-LOAD-BALANCER"
	chainInput       = "NSP-INPUT"
	chainForward     = "NSP-FORWARD"

	// masqMark is kube-proxy's default masqueradeBit 14.
	masqMark = "0x4000"
)

var protocols = []v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP}

// setName gives the family's copy of a set: ipset names are global, and a
// set holds one family.
func setName(base string, f v1.IPFamily) string {
	if f == v1.IPv6Protocol {
		return base + "-6"
	}
	return base
}

// ipsetsFor lists every set for a family.
func ipsetsFor(f v1.IPFamily) []IPSet {
	s := []IPSet{
		{setName(setClusterIP, f), "hash:ip,port", f},
		{setName(setLoopBack, f), "hash:ip,port,ip", f},
		{setName(setExternalIP, f), "hash:ip,port", f},
		{setName(setExternalLoc, f), "hash:ip,port", f},
		{setName(setLB, f), "hash:ip,port", f},
		{setName(setLBLocal, f), "hash:ip,port", f},
		{setName(setLBFW, f), "hash:ip,port", f},
		{setName(setLBSourceCIDR, f), "hash:ip,port,net", f},
		{setName(setHealthCheck, f), "bitmap:port", f},
	}
	for _, p := range protocols {
		s = append(s, IPSet{setName(setNodePort+string(p), f), "bitmap:port", f},
			IPSet{setName(setNodePortLoc+string(p), f), "bitmap:port", f})
	}
	return s
}

func ipPort(a netip.Addr, p v1.Protocol, port int32) string {
	return fmt.Sprintf("%s,%s:%d", a, strings.ToLower(string(p)), port)
}

// jumps are the rules in built-in chains; everything else is in our chains.
var jumps = []Jump{
	{"nat", "PREROUTING", chainServices},
	{"nat", "OUTPUT", chainServices},
	{"nat", "POSTROUTING", chainPostrouting},
	{"filter", "INPUT", chainInput},
	{"filter", "FORWARD", chainForward},
}

// iptablesRules is the fixed rule set for one family: its size depends on
// the configuration only, never on the number of Services (the ipsets carry
// the per-Service data).
func iptablesRules(f v1.IPFamily, clusterCIDRs []netip.Prefix, masqueradeAll bool) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	s := func(base string) string { return setName(base, f) }
	w("*nat")
	for _, c := range []string{chainServices, chainPostrouting, chainMarkMasq, chainNodePort, chainLB} {
		w(":%s - [0:0]", c)
	}
	// Hairpin: a Pod reaching itself through a Service must see the node as source.
	w("-A %s -m set --match-set %s dst,dst,src -j MASQUERADE", chainPostrouting, s(setLoopBack))
	w("-A %s -m mark ! --mark %s/%s -j RETURN", chainPostrouting, masqMark, masqMark)
	w("-A %s -j MARK --xor-mark %s", chainPostrouting, masqMark)
	w("-A %s -j MASQUERADE --random-fully", chainPostrouting)
	w("-A %s -j MARK --or-mark %s", chainMarkMasq, masqMark)
	switch {
	case masqueradeAll:
		w("-A %s -m set --match-set %s dst,dst -j %s", chainServices, s(setClusterIP), chainMarkMasq)
	default:
		for _, c := range clusterCIDRs {
			if FamilyOfPrefix(c) == f {
				w("-A %s -m set --match-set %s dst,dst ! -s %s -j %s", chainServices, s(setClusterIP), c, chainMarkMasq)
			}
		}
	}
	w("-A %s -m set --match-set %s dst,dst -j %s", chainServices, s(setExternalIP), chainMarkMasq)
	w("-A %s -m set --match-set %s dst,dst -j %s", chainServices, s(setLB), chainLB)
	w("-A %s -m addrtype --dst-type LOCAL -j %s", chainServices, chainNodePort)
	w("-A %s -m set --match-set %s dst,dst -j RETURN", chainLB, s(setLBLocal))
	w("-A %s -j %s", chainLB, chainMarkMasq)
	for _, p := range protocols {
		lp := strings.ToLower(string(p))
		// eTP Local: keep the client's source address.
		w("-A %s -p %s -m set --match-set %s dst -j RETURN", chainNodePort, lp, s(setNodePortLoc+string(p)))
		w("-A %s -p %s -m set --match-set %s dst -j %s", chainNodePort, lp, s(setNodePort+string(p)), chainMarkMasq)
	}
	w("COMMIT")
	w("*filter")
	w(":%s - [0:0]", chainInput)
	w(":%s - [0:0]", chainForward)
	// loadBalancerSourceRanges: IPVS takes packets in LOCAL_IN after the
	// filter table, so dropping here is early enough.
	w("-A %s -m set --match-set %s dst,dst -m set ! --match-set %s dst,dst,src -j DROP", chainInput, s(setLBFW), s(setLBSourceCIDR))
	w("-A %s -p tcp -m set --match-set %s dst -j ACCEPT", chainInput, s(setHealthCheck))
	w("-A %s -m mark --mark %s/%s -j ACCEPT", chainForward, masqMark, masqMark)
	w("-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", chainForward)
	w("COMMIT")
	return b.String()
}

// FamilyOfPrefix is the IP family of a CIDR.
func FamilyOfPrefix(p netip.Prefix) v1.IPFamily {
	if p.Addr().Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}
