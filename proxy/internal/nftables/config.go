// Package nftables is the proxy's nftables data plane: it programs a
// servicestate.State into a private nftables table per IP family, after the
// rule shapes of upstream kube-proxy's nftables mode (verdict maps for
// dispatch, one chain set per Service port), so that one Service change is one
// small transaction and a restart adopts what the kernel already has.
package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	v1 "k8s.io/api/core/v1"
	"sigs.k8s.io/knftables"
)

// DefaultTableName is the table created in family ip (and ip6 for IPv6).
// It is not kube-proxy's "kube-proxy" table so both can coexist on a node.
const DefaultTableName = "nodesuite-proxy"

// DefaultMasqueradeBit is kube-proxy's default (--iptables-masquerade-bit / masqueradeBit).
const DefaultMasqueradeBit = 14

// Config configures New. The zero value of every field has a usable default
// except Families, which defaults to IPv4 only.
//
// Wiring from a KubeProxyConfiguration:
//
//	nftables.Config{
//	    Families:      families of the node (primary first),
//	    ClusterCIDRs:  parsed cfg.ClusterCIDR (comma-separated, any family),
//	    MasqueradeAll: cfg.NFTables.MasqueradeAll,
//	    MasqueradeBit: *cfg.NFTables.MasqueradeBit,
//	}
//
// NodePort addresses are not configured here: they come with every Sync in
// State.NodeIPs (nodePortAddresses already applied). The health check node
// port servers are not part of a data plane: the proxy runs them beside
// whichever plane it uses (internal/health).
type Config struct {
	// TableName is the nftables table, created in family "ip" for IPv4 and
	// "ip6" for IPv6. Default DefaultTableName.
	TableName string
	// Families to program; keys of other families in a State are ignored.
	// Default [IPv4].
	Families []v1.IPFamily
	// ClusterCIDRs: traffic to a ClusterIP from outside them is masqueraded
	// (and Pod traffic to an eTP=Local external address is short-circuited to
	// the cluster endpoints). Either family; each table uses its own.
	ClusterCIDRs []netip.Prefix
	// MasqueradeAll masquerades all traffic to ClusterIPs.
	MasqueradeAll bool
	// MasqueradeBit is the packet mark bit (0-31) meaning "masquerade this
	// packet in postrouting". Nil means DefaultMasqueradeBit.
	MasqueradeBit *int
	// NFTables gives the knftables.Interface per family (tests pass
	// knftables.NewFake(family, table)). A missing family gets
	// knftables.New(family, TableName), which needs the nft binary.
	NFTables map[v1.IPFamily]knftables.Interface
	// Conntrack clears stale UDP conntrack entries; nil means netlink.
	Conntrack Conntrack
}

// ErrInvalidConfig is wrapped by every validation error of New.
var ErrInvalidConfig = errors.New("invalid nftables proxy config")

// nft identifiers: a letter or "_." then letters, digits and "/-_.".
var identRE = regexp.MustCompile(`^[a-zA-Z_.][a-zA-Z0-9/\-_.]*$`)

func (c Config) withDefaults() (Config, error) {
	if c.TableName == "" {
		c.TableName = DefaultTableName
	}
	if !identRE.MatchString(c.TableName) || len(c.TableName) > 255 {
		return c, fmt.Errorf("%w: TableName %q is not an nftables identifier", ErrInvalidConfig, c.TableName)
	}
	if len(c.Families) == 0 {
		c.Families = []v1.IPFamily{v1.IPv4Protocol}
	}
	seen := map[v1.IPFamily]bool{}
	for _, f := range c.Families {
		if f != v1.IPv4Protocol && f != v1.IPv6Protocol {
			return c, fmt.Errorf("%w: Families: unknown IP family %q", ErrInvalidConfig, f)
		}
		if seen[f] {
			return c, fmt.Errorf("%w: Families: %q listed twice", ErrInvalidConfig, f)
		}
		seen[f] = true
	}
	if c.MasqueradeBit == nil {
		b := DefaultMasqueradeBit
		c.MasqueradeBit = &b
	}
	if *c.MasqueradeBit < 0 || *c.MasqueradeBit > 31 {
		return c, fmt.Errorf("%w: MasqueradeBit %d is not in 0-31", ErrInvalidConfig, *c.MasqueradeBit)
	}
	for _, p := range c.ClusterCIDRs {
		if !p.IsValid() {
			return c, fmt.Errorf("%w: ClusterCIDRs: invalid prefix %v", ErrInvalidConfig, p)
		}
	}
	return c, nil
}

func nftFamily(f v1.IPFamily) knftables.Family {
	if f == v1.IPv6Protocol {
		return knftables.IPv6Family
	}
	return knftables.IPv4Family
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Unmap().Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}
