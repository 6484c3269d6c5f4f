// Package config turns kube-proxy's flags and KubeProxyConfiguration file
// into the proxy's settings. Only what this proxy implements is accepted: a
// field it would ignore is an error that names the field.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kpv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"sigs.k8s.io/yaml"
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid proxy configuration")

// ErrUnsupported is wrapped by errors about fields this proxy does not implement.
var ErrUnsupported = errors.New("unsupported")

// Modes this proxy implements.
const (
	ModeIPVS     = "ipvs"
	ModeNFTables = "nftables"
)

// Config is the resolved configuration.
type Config struct {
	ConfigFile         string
	Kubeconfig         string
	Master             string
	HostnameOverride   string
	Mode               string // "" = choose by kernel
	ClusterCIDRs       []netip.Prefix
	HealthzBindAddress string
	MetricsBindAddress string
	NodePortAddresses  []string
	MasqueradeAll      bool
	Cleanup            bool
	ConfigSyncPeriod   time.Duration
	SyncPeriod         time.Duration
	MinSyncPeriod      time.Duration
	IPVS               IPVS
	Conntrack          kpv1alpha1.KubeProxyConntrackConfiguration
	ClientQPS          float32
	ClientBurst        int32
	ContentType        string
	EnableProfiling    bool
}

// IPVS is the ipvs section.
type IPVS struct {
	Scheduler                      string
	StrictARP                      bool
	ExcludeCIDRs                   []netip.Prefix
	TCPTimeout, TCPFinTimeout, UDP time.Duration
}

// Flags holds the raw flag values; explicit flags override the file.
type Flags struct {
	fs                *pflag.FlagSet
	configFile        string
	kubeconfig        string
	master            string
	hostname          string
	mode              string
	clusterCIDR       string
	healthz, metrics  string
	nodePortAddresses []string
	scheduler         string
	minSync, sync     time.Duration
	strictARP         bool
	excludeCIDRs      []string
	tcpTO, tcpFinTO   time.Duration
	udpTO             time.Duration
	masqueradeAll     bool
	cleanup           bool
	configSync        time.Duration
}

// AddFlags registers kube-proxy's flags (the ones this proxy implements).
func AddFlags(fs *pflag.FlagSet) *Flags {
	f := &Flags{fs: fs}
	fs.StringVar(&f.configFile, "config", "", "The path to a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) file. Flags set explicitly override it.")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "Path to kubeconfig file with authorization information.")
	fs.StringVar(&f.master, "master", "", "The address of the Kubernetes API server (overrides any value in kubeconfig).")
	fs.StringVar(&f.hostname, "hostname-override", "", "The name of this node, if not the hostname.")
	fs.StringVar(&f.mode, "proxy-mode", "", "Which proxy mode to use: 'ipvs' or 'nftables'. Default: ipvs where the kernel has IPVS, else nftables.")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", "", "The CIDR range(s) of the Pods in the cluster, comma-separated; traffic from outside them to ClusterIPs is masqueraded.")
	fs.StringVar(&f.healthz, "healthz-bind-address", "0.0.0.0:10256", "The IP address and port for the health check server (kube-proxy's /healthz).")
	fs.StringVar(&f.metrics, "metrics-bind-address", "127.0.0.1:10249", "The IP address and port for the metrics server (/metrics, /healthz, /readyz).")
	fs.StringSliceVar(&f.nodePortAddresses, "nodeport-addresses", nil, "CIDRs (or 'primary') of the node addresses NodePorts are served on; empty means all.")
	fs.StringVar(&f.scheduler, "ipvs-scheduler", "", "The default IPVS scheduler (rr, lc, dh, sh, sed, nq, wrr, wlc, mh, ...); default rr.")
	fs.DurationVar(&f.minSync, "ipvs-min-sync-period", 0, "The minimum period between syncs (e.g. '5s'); 0 syncs at every change.")
	fs.DurationVar(&f.sync, "ipvs-sync-period", 30*time.Second, "The period of the full reconcile. Must be greater than 0.")
	fs.BoolVar(&f.strictARP, "ipvs-strict-arp", false, "Set arp_ignore=1 and arp_announce=2 so kube-ipvs0's addresses are not announced.")
	fs.StringSliceVar(&f.excludeCIDRs, "ipvs-exclude-cidrs", nil, "CIDRs whose IPVS virtual servers this proxy never removes.")
	fs.DurationVar(&f.tcpTO, "ipvs-tcp-timeout", 0, "The timeout for idle IPVS TCP connections; 0 leaves the kernel's value.")
	fs.DurationVar(&f.tcpFinTO, "ipvs-tcpfin-timeout", 0, "The timeout for IPVS TCP connections after a FIN; 0 leaves the kernel's value.")
	fs.DurationVar(&f.udpTO, "ipvs-udp-timeout", 0, "The timeout for IPVS UDP packets; 0 leaves the kernel's value.")
	fs.BoolVar(&f.masqueradeAll, "masquerade-all", false, "SNAT all traffic sent through Service ClusterIPs.")
	fs.BoolVar(&f.cleanup, "cleanup", false, "Remove everything this proxy programmed (virtual servers, addresses, ipsets, rules) and exit.")
	fs.DurationVar(&f.configSync, "config-sync-period", 15*time.Minute, "How often the informers resync from their caches. Must be greater than 0.")
	return f
}

func (f *Flags) changed(name string) bool { return f.fs.Changed(name) }

// Resolve reads the file (if any), applies defaults and explicit flags,
// and validates the result.
func (f *Flags) Resolve() (*Config, error) {
	kp := &kpv1alpha1.KubeProxyConfiguration{}
	if f.configFile != "" {
		data, err := os.ReadFile(f.configFile)
		if err != nil {
			return nil, fmt.Errorf("%w: --config: %w", ErrInvalid, err)
		}
		if kp, err = Decode(data); err != nil {
			return nil, fmt.Errorf("%w: --config %s: %w", ErrInvalid, f.configFile, err)
		}
	}
	c := &Config{ConfigFile: f.configFile, Kubeconfig: kp.ClientConnection.Kubeconfig, HostnameOverride: kp.HostnameOverride,
		Mode: string(kp.Mode), HealthzBindAddress: kp.HealthzBindAddress, MetricsBindAddress: kp.MetricsBindAddress,
		NodePortAddresses: kp.NodePortAddresses, MasqueradeAll: kp.IPTables.MasqueradeAll || kp.NFTables.MasqueradeAll,
		ConfigSyncPeriod: kp.ConfigSyncPeriod.Duration, SyncPeriod: kp.IPVS.SyncPeriod.Duration, MinSyncPeriod: kp.IPVS.MinSyncPeriod.Duration,
		Conntrack: kp.Conntrack, ClientQPS: kp.ClientConnection.QPS, ClientBurst: kp.ClientConnection.Burst,
		ContentType: kp.ClientConnection.ContentType, EnableProfiling: kp.EnableProfiling,
		IPVS: IPVS{Scheduler: kp.IPVS.Scheduler, StrictARP: kp.IPVS.StrictARP, TCPTimeout: kp.IPVS.TCPTimeout.Duration,
			TCPFinTimeout: kp.IPVS.TCPFinTimeout.Duration, UDP: kp.IPVS.UDPTimeout.Duration}}
	clusterCIDR := kp.ClusterCIDR
	excludes := kp.IPVS.ExcludeCIDRs
	// A flag wins when set explicitly; its default fills what the file leaves empty.
	setS := func(name string, dst *string, v string) {
		if f.changed(name) || *dst == "" {
			*dst = v
		}
	}
	setS("kubeconfig", &c.Kubeconfig, f.kubeconfig)
	setS("hostname-override", &c.HostnameOverride, f.hostname)
	setS("proxy-mode", &c.Mode, f.mode)
	setS("cluster-cidr", &clusterCIDR, f.clusterCIDR)
	setS("healthz-bind-address", &c.HealthzBindAddress, f.healthz)
	setS("metrics-bind-address", &c.MetricsBindAddress, f.metrics)
	setS("ipvs-scheduler", &c.IPVS.Scheduler, f.scheduler)
	c.Master = f.master
	c.Cleanup = f.cleanup
	if f.changed("nodeport-addresses") {
		c.NodePortAddresses = f.nodePortAddresses
	}
	if f.changed("ipvs-exclude-cidrs") {
		excludes = f.excludeCIDRs
	}
	setD := func(name string, dst *time.Duration, v time.Duration) {
		if f.changed(name) || (*dst == 0 && v != 0) {
			*dst = v
		}
	}
	setD("ipvs-sync-period", &c.SyncPeriod, f.sync)
	setD("ipvs-min-sync-period", &c.MinSyncPeriod, f.minSync)
	setD("config-sync-period", &c.ConfigSyncPeriod, f.configSync)
	setD("ipvs-tcp-timeout", &c.IPVS.TCPTimeout, f.tcpTO)
	setD("ipvs-tcpfin-timeout", &c.IPVS.TCPFinTimeout, f.tcpFinTO)
	setD("ipvs-udp-timeout", &c.IPVS.UDP, f.udpTO)
	if f.changed("ipvs-strict-arp") {
		c.IPVS.StrictARP = f.strictARP
	}
	if f.changed("masquerade-all") {
		c.MasqueradeAll = f.masqueradeAll
	}
	if c.ClientQPS == 0 {
		c.ClientQPS = 5
	}
	if c.ClientBurst == 0 {
		c.ClientBurst = 10
	}
	var err error
	if c.ClusterCIDRs, err = parseCIDRs("clusterCIDR", splitComma(clusterCIDR)); err != nil {
		return nil, err
	}
	if c.IPVS.ExcludeCIDRs, err = parseCIDRs("ipvs.excludeCIDRs", excludes); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseCIDRs(field string, ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %q is not a CIDR", ErrInvalid, field, s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *Config) validate() error {
	switch c.Mode {
	case "", ModeIPVS, ModeNFTables:
	default:
		return fmt.Errorf("%w: mode %q: this proxy implements %q and %q", ErrInvalid, c.Mode, ModeIPVS, ModeNFTables)
	}
	if c.SyncPeriod <= 0 {
		return fmt.Errorf("%w: ipvs.syncPeriod must be greater than 0", ErrInvalid)
	}
	if c.MinSyncPeriod < 0 || c.MinSyncPeriod > c.SyncPeriod {
		return fmt.Errorf("%w: ipvs.minSyncPeriod %s must be between 0 and syncPeriod %s", ErrInvalid, c.MinSyncPeriod, c.SyncPeriod)
	}
	if c.ConfigSyncPeriod <= 0 {
		return fmt.Errorf("%w: configSyncPeriod must be greater than 0", ErrInvalid)
	}
	for _, s := range c.NodePortAddresses {
		if s == "primary" {
			continue
		}
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%w: nodePortAddresses: %q is neither a CIDR nor \"primary\"", ErrInvalid, s)
		}
	}
	for _, a := range []struct{ name, v string }{{"healthzBindAddress", c.HealthzBindAddress}, {"metricsBindAddress", c.MetricsBindAddress}} {
		if a.v == "" {
			continue
		}
		if _, err := netip.ParseAddrPort(a.v); err != nil {
			return fmt.Errorf("%w: %s %q: want IP:port", ErrInvalid, a.name, a.v)
		}
	}
	if c.IPVS.Scheduler != "" && !knownSchedulers[c.IPVS.Scheduler] {
		return fmt.Errorf("%w: ipvs.scheduler %q: not an IPVS scheduler", ErrInvalid, c.IPVS.Scheduler)
	}
	return nil
}

// knownSchedulers are the kernel's IPVS schedulers.
var knownSchedulers = map[string]bool{"rr": true, "wrr": true, "lc": true, "wlc": true, "lblc": true, "lblcr": true,
	"dh": true, "sh": true, "sed": true, "nq": true, "fo": true, "ovf": true, "mh": true, "twos": true}

// KnownScheduler reports whether name is an IPVS scheduler (for the per-Service annotation).
func KnownScheduler(name string) bool { return knownSchedulers[name] }

// supported lists the KubeProxyConfiguration fields this proxy implements,
// as dotted paths; a prefix ending in "." admits everything under it.
var supported = []string{
	"apiVersion", "kind",
	"clientConnection.kubeconfig", "clientConnection.qps", "clientConnection.burst",
	"clientConnection.contentType", "clientConnection.acceptContentTypes",
	"hostnameOverride", "bindAddress", "healthzBindAddress", "metricsBindAddress", "bindAddressHardFail",
	"enableProfiling", "mode", "ipvs.", "clusterCIDR", "nodePortAddresses", "configSyncPeriod",
	"iptables.masqueradeAll", "nftables.masqueradeAll", "conntrack.", "detectLocalMode",
}

// Decode parses a KubeProxyConfiguration strictly: unknown fields, a wrong
// apiVersion/kind and any field set that this proxy does not implement are
// errors naming the field. Fields at their zero value (as kubeadm writes
// them) are accepted.
func Decode(data []byte) (*kpv1alpha1.KubeProxyConfiguration, error) {
	kp := &kpv1alpha1.KubeProxyConfiguration{}
	if err := yaml.UnmarshalStrict(data, kp); err != nil {
		return nil, err
	}
	want := kpv1alpha1.SchemeGroupVersion.String()
	if kp.APIVersion != want || kp.Kind != "KubeProxyConfiguration" {
		return nil, fmt.Errorf("apiVersion/kind %q/%q: want %q/KubeProxyConfiguration", kp.APIVersion, kp.Kind, want)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var bad []string
	walk("", raw, func(path string, v any) {
		if isZero(v) || isSupported(path) {
			return
		}
		bad = append(bad, path)
	})
	if len(bad) > 0 {
		sort.Strings(bad)
		return nil, fmt.Errorf("%w: field %s is set, but this proxy does not implement it", ErrUnsupported, strings.Join(bad, ", "))
	}
	if m := kp.DetectLocalMode; m != "" && m != "ClusterCIDR" {
		return nil, fmt.Errorf("%w: detectLocalMode %q: only ClusterCIDR is implemented", ErrUnsupported, m)
	}
	// Defaults as kube-proxy's for what the file leaves out.
	if kp.IPVS.SyncPeriod.Duration == 0 {
		kp.IPVS.SyncPeriod = metav1.Duration{Duration: 30 * time.Second}
	}
	return kp, nil
}

func walk(prefix string, v any, f func(string, any)) {
	if m, ok := v.(map[string]any); ok && len(m) > 0 {
		for k, x := range m {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			walk(p, x, f)
		}
		return
	}
	if prefix != "" {
		f(prefix, v)
	}
}

func isSupported(path string) bool {
	for _, s := range supported {
		if path == s || (strings.HasSuffix(s, ".") && strings.HasPrefix(path, s)) {
			return true
		}
	}
	return false
}

func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case float64:
		return x == 0
	case string:
		if x == "" {
			return true
		}
		d, err := time.ParseDuration(x)
		return err == nil && d == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}
