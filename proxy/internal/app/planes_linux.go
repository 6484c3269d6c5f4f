package app

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"

	"github.com/nodesuite/nodesuite/proxy/internal/config"
	"github.com/nodesuite/nodesuite/proxy/internal/health"
	"github.com/nodesuite/nodesuite/proxy/internal/ipvs"
	"github.com/nodesuite/nodesuite/proxy/internal/nftables"
	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

func ipvsAvailable() bool { return ipvs.Available() }

func hostAddresses() ([]netip.Addr, error) { return ipvs.HostAddresses() }

func newDataPlane(log *zap.Logger, mode string, cfg *config.Config, families []v1.IPFamily) (servicestate.DataPlane, func(), error) {
	switch mode {
	case config.ModeIPVS:
		osi, err := ipvs.NewLinuxOS()
		if err != nil {
			return nil, nil, fmt.Errorf("proxy-mode ipvs: %w", err)
		}
		p := ipvs.New(osi, ipvs.Options{Families: families, Scheduler: cfg.IPVS.Scheduler, ClusterCIDRs: prefixes(cfg.ClusterCIDRs),
			MasqueradeAll: cfg.MasqueradeAll, StrictARP: cfg.IPVS.StrictARP, ExcludeCIDRs: cfg.IPVS.ExcludeCIDRs,
			Timeouts: ipvs.Timeouts{TCP: cfg.IPVS.TCPTimeout, TCPFin: cfg.IPVS.TCPFinTimeout, UDP: cfg.IPVS.UDP}}, log.Named("ipvs"))
		hs := health.NewServiceServers(log.Named("healthcheck"), "")
		return withHealth(p, hs, log), func() { hs.Close(); osi.Close() }, nil
	case config.ModeNFTables:
		p, err := nftables.New(log.Named("nftables"), nftables.Config{Families: families, ClusterCIDRs: prefixes(cfg.ClusterCIDRs),
			MasqueradeAll: cfg.MasqueradeAll})
		if err != nil {
			return nil, nil, fmt.Errorf("proxy-mode nftables: %w", err)
		}
		hs := health.NewServiceServers(log.Named("healthcheck"), "")
		return withHealth(p, hs, log), func() { hs.Close(); p.Close() }, nil
	}
	return nil, nil, fmt.Errorf("proxy mode %q not implemented", mode)
}

func cleanup(log *zap.Logger, mode string, families []v1.IPFamily) error {
	if mode != config.ModeIPVS {
		return fmt.Errorf("--cleanup is implemented for proxy-mode ipvs only (asked for %s)", mode)
	}
	osi, err := ipvs.NewLinuxOS()
	if err != nil {
		return err
	}
	defer osi.Close()
	addrs, _ := ipvs.HostAddresses()
	if err := ipvs.Cleanup(osi, families, addrs); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	log.Info("cleaned up IPVS virtual servers, kube-ipvs0, ipsets and iptables chains")
	return nil
}

// applyConntrack sets the netfilter conntrack sysctls from the conntrack
// section, as kube-proxy does at start.
func applyConntrack(log *zap.Logger, cfg *config.Config) {
	c := cfg.Conntrack
	set := func(path string, v string) {
		if err := os.WriteFile(filepath.Join("/proc/sys", path), []byte(v), 0o644); err != nil {
			log.Warn("conntrack sysctl", zap.String("sysctl", path), zap.Error(err))
		}
	}
	if c.MaxPerCore != nil && *c.MaxPerCore > 0 {
		n := int(*c.MaxPerCore) * runtime.NumCPU()
		if c.Min != nil && int(*c.Min) > n {
			n = int(*c.Min)
		}
		set("net/netfilter/nf_conntrack_max", strconv.Itoa(n))
	}
	if d := c.TCPEstablishedTimeout; d != nil && d.Duration > 0 {
		set("net/netfilter/nf_conntrack_tcp_timeout_established", strconv.Itoa(int(d.Seconds())))
	}
	if d := c.TCPCloseWaitTimeout; d != nil && d.Duration > 0 {
		set("net/netfilter/nf_conntrack_tcp_timeout_close_wait", strconv.Itoa(int(d.Seconds())))
	}
	if c.TCPBeLiberal {
		set("net/netfilter/nf_conntrack_tcp_be_liberal", "1")
	}
	if c.UDPTimeout.Duration > 0 {
		set("net/netfilter/nf_conntrack_udp_timeout", strconv.Itoa(int(c.UDPTimeout.Seconds())))
	}
	if c.UDPStreamTimeout.Duration > 0 {
		set("net/netfilter/nf_conntrack_udp_timeout_stream", strconv.Itoa(int(c.UDPStreamTimeout.Seconds())))
	}
}
