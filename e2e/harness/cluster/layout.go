package cluster

import (
	"net"
	"path/filepath"
)

// Fixed cluster facts (team contract).
const (
	ServiceCIDR   = "10.96.0.0/16"
	PodCIDR       = "10.244.0.0/16"
	APIServiceIP  = "10.96.0.1"
	DNSServiceIP  = "10.96.0.10"
	ClusterDomain = "cluster.local"
	// NodePodCIDR is what the controller-manager gives the first (only) node
	// of PodCIDR with the default /24 mask; Up checks the Node got it.
	NodePodCIDR = "10.244.0.0/24"
	// BridgeName is the CNI bridge; Up creates it before anything runs so the
	// safety routes have a device, and Down deletes it.
	BridgeName  = "nodesuite0"
	BridgeCIDR  = "10.244.0.1/24"
	GuardTable  = "nodesuite-guard"
	APIPort     = 6443
	EtcdPort    = 2379
	EtcdPeer    = 2380
	EtcdMetrics = 2381
	// ShimOpsAddr keeps our runtime-shim's ops server off kube-scheduler's 10259.
	ShimOpsAddr = "127.0.0.1:10359"
)

// Layout is where one cluster keeps its files. Sockets live under RunDir, a
// short path, because a unix socket path is limited to 108 bytes and the
// checkout may be deep.
type Layout struct {
	Dir    string // <repo>/_output/cluster
	RunDir string // /run/nodesuite-cluster
	// Ports override the control plane's ports; zero fields keep the
	// cluster's fixed ones. A control plane started beside the local cluster
	// (package controlplane) picks free ones.
	Ports Ports
}

// Ports are the control plane's TCP ports.
type Ports struct {
	API, Etcd, EtcdPeer, EtcdMetrics int
}

func orDefault(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

func (l Layout) APIPort() int         { return orDefault(l.Ports.API, APIPort) }
func (l Layout) EtcdPort() int        { return orDefault(l.Ports.Etcd, EtcdPort) }
func (l Layout) EtcdPeerPort() int    { return orDefault(l.Ports.EtcdPeer, EtcdPeer) }
func (l Layout) EtcdMetricsPort() int { return orDefault(l.Ports.EtcdMetrics, EtcdMetrics) }

// NewLayout returns the layout for the checkout at repoRoot.
func NewLayout(repoRoot string) Layout {
	return Layout{Dir: filepath.Join(repoRoot, "_output", "cluster"), RunDir: "/run/nodesuite-cluster"}
}

func (l Layout) PKI() string           { return filepath.Join(l.Dir, "pki") }
func (l Layout) Logs() string          { return filepath.Join(l.Dir, "logs") }
func (l Layout) State() string         { return filepath.Join(l.Dir, "state.json") }
func (l Layout) Etcd() string          { return filepath.Join(l.Dir, "etcd") }
func (l Layout) KubeletRoot() string   { return filepath.Join(l.Dir, "kubelet") }
func (l Layout) PodLogs() string       { return filepath.Join(l.Dir, "pod-logs") }
func (l Layout) StaticPods() string    { return filepath.Join(l.Dir, "manifests") }
func (l Layout) VolumePlugins() string { return filepath.Join(l.Dir, "volume-plugins") }
func (l Layout) FlexVolume() string    { return filepath.Join(l.Dir, "flexvolume") }
func (l Layout) CNIConfDir() string    { return filepath.Join(l.Dir, "cni", "net.d") }
func (l Layout) CNIIPAMDir() string    { return filepath.Join(l.Dir, "cni", "ipam") }
func (l Layout) CNICacheDir() string   { return filepath.Join(l.Dir, "cni", "cache") }
func (l Layout) Config() string        { return filepath.Join(l.Dir, "config") }
func (l Layout) ResolvConf() string    { return filepath.Join(l.Dir, "config", "resolv.conf") }
func (l Layout) KubeletConfig() string { return filepath.Join(l.Dir, "config", "kubelet.yaml") }
func (l Layout) ProxyConfig() string   { return filepath.Join(l.Dir, "config", "kube-proxy.yaml") }
func (l Layout) RuntimeRoot() string   { return filepath.Join(l.Dir, "runtime", "root") }
func (l Layout) RuntimeState() string  { return filepath.Join(l.RunDir, "state") }
func (l Layout) CRISocket() string     { return filepath.Join(l.RunDir, "cri.sock") }
func (l Layout) Kubeconfig(n string) string {
	return filepath.Join(l.Dir, n+".kubeconfig")
}

// Host is what the cluster needs to know about the machine.
type Host struct {
	IP       net.IP // the uplink's address, advertised by the API server
	NodeName string // lower-case hostname
}
