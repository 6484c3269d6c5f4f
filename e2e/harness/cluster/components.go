package cluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbasev1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Process is one daemon the harness starts, detached, and waits for.
type Process struct {
	Name string
	Path string
	Args []string
	// Health is an http(s) URL answering 200 once the process is ready;
	// empty means "ready once started" (readiness is then checked otherwise).
	Health string
}

func kv(k, v string) string { return "--" + k + "=" + v }

// EtcdProcess runs etcd on 127.0.0.1 with TLS for clients (the API server is
// its only one). --unsafe-no-fsync because this etcd's data is thrown away by
// `down`; fsync per write would make every API call wait on the disk.
func EtcdProcess(bin string, l Layout) Process {
	pki := l.PKI()
	peer := fmt.Sprintf("http://127.0.0.1:%d", l.EtcdPeerPort())
	client := fmt.Sprintf("https://127.0.0.1:%d", l.EtcdPort())
	return Process{
		Name: "etcd", Path: bin,
		Args: []string{
			kv("name", "nodesuite"),
			kv("data-dir", l.Etcd()),
			kv("listen-client-urls", client),
			kv("advertise-client-urls", client),
			kv("listen-peer-urls", peer),
			kv("initial-advertise-peer-urls", peer),
			kv("initial-cluster", "nodesuite="+peer),
			kv("listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", l.EtcdMetricsPort())),
			kv("cert-file", filepath.Join(pki, "etcd-server.crt")),
			kv("key-file", filepath.Join(pki, "etcd-server.key")),
			kv("trusted-ca-file", filepath.Join(pki, "etcd-ca.crt")),
			"--client-cert-auth=true",
			"--unsafe-no-fsync=true",
		},
		Health: fmt.Sprintf("http://127.0.0.1:%d/health", l.EtcdMetricsPort()),
	}
}

// APIServerProcess runs kube-apiserver advertising the host's address (it
// refuses 127.0.0.1) and listening on all addresses so Pods reach it through
// 10.96.0.1:443.
func APIServerProcess(bin string, l Layout, h Host) Process {
	p := func(n string) string { return filepath.Join(l.PKI(), n) }
	return Process{
		Name: "kube-apiserver", Path: bin,
		Args: []string{
			kv("advertise-address", h.IP.String()),
			kv("bind-address", "0.0.0.0"),
			kv("secure-port", strconv.Itoa(l.APIPort())),
			kv("etcd-servers", fmt.Sprintf("https://127.0.0.1:%d", l.EtcdPort())),
			kv("etcd-cafile", p("etcd-ca.crt")),
			kv("etcd-certfile", p("apiserver-etcd-client.crt")),
			kv("etcd-keyfile", p("apiserver-etcd-client.key")),
			kv("client-ca-file", p("ca.crt")),
			kv("tls-cert-file", p("apiserver.crt")),
			kv("tls-private-key-file", p("apiserver.key")),
			kv("kubelet-client-certificate", p("apiserver-kubelet-client.crt")),
			kv("kubelet-client-key", p("apiserver-kubelet-client.key")),
			kv("kubelet-certificate-authority", p("ca.crt")),
			kv("kubelet-preferred-address-types", "InternalIP,Hostname,ExternalIP"),
			kv("authorization-mode", "Node,RBAC"),
			kv("enable-admission-plugins", "NodeRestriction"),
			kv("service-cluster-ip-range", ServiceCIDR),
			kv("service-account-issuer", "https://kubernetes.default.svc."+ClusterDomain),
			kv("service-account-key-file", p("sa.pub")),
			kv("service-account-signing-key-file", p("sa.key")),
			kv("requestheader-client-ca-file", p("front-proxy-ca.crt")),
			kv("requestheader-allowed-names", "front-proxy-client"),
			kv("requestheader-extra-headers-prefix", "X-Remote-Extra-"),
			kv("requestheader-group-headers", "X-Remote-Group"),
			kv("requestheader-username-headers", "X-Remote-User"),
			kv("proxy-client-cert-file", p("front-proxy-client.crt")),
			kv("proxy-client-key-file", p("front-proxy-client.key")),
			"--allow-privileged=true",
			"--profiling=false",
		},
		Health: fmt.Sprintf("https://127.0.0.1:%d/readyz", l.APIPort()),
	}
}

// ControllerManagerProcess allocates node CIDRs from PodCIDR and signs
// ServiceAccount tokens with the shared key.
func ControllerManagerProcess(bin string, l Layout) Process {
	kc := l.Kubeconfig("controller-manager")
	p := func(n string) string { return filepath.Join(l.PKI(), n) }
	return Process{
		Name: "kube-controller-manager", Path: bin,
		Args: []string{
			kv("kubeconfig", kc),
			kv("authentication-kubeconfig", kc),
			kv("authorization-kubeconfig", kc),
			kv("bind-address", "127.0.0.1"),
			kv("secure-port", "10257"),
			"--leader-elect=false",
			"--allocate-node-cidrs=true",
			kv("cluster-cidr", PodCIDR),
			kv("node-cidr-mask-size", "24"),
			kv("service-cluster-ip-range", ServiceCIDR),
			kv("cluster-signing-cert-file", p("ca.crt")),
			kv("cluster-signing-key-file", p("ca.key")),
			kv("root-ca-file", p("ca.crt")),
			kv("requestheader-client-ca-file", p("front-proxy-ca.crt")),
			kv("service-account-private-key-file", p("sa.key")),
			"--use-service-account-credentials=true",
			kv("controllers", "*,bootstrapsigner,tokencleaner"),
			kv("flex-volume-plugin-dir", l.FlexVolume()),
		},
		Health: "https://127.0.0.1:10257/healthz",
	}
}

// SchedulerProcess is kube-scheduler with its own identity.
func SchedulerProcess(bin string, l Layout) Process {
	kc := l.Kubeconfig("scheduler")
	return Process{
		Name: "kube-scheduler", Path: bin,
		Args: []string{
			kv("kubeconfig", kc),
			kv("authentication-kubeconfig", kc),
			kv("authorization-kubeconfig", kc),
			kv("bind-address", "127.0.0.1"),
			kv("secure-port", "10259"),
			"--leader-elect=false",
		},
		Health: "https://127.0.0.1:10259/healthz",
	}
}

// KubeletProcess starts either kubelet with the flags the team contract names.
func KubeletProcess(bin string, l Layout, h Host) Process {
	return Process{
		Name: "kubelet", Path: bin,
		Args: []string{
			kv("config", l.KubeletConfig()),
			kv("kubeconfig", l.Kubeconfig("kubelet")),
			kv("container-runtime-endpoint", "unix://"+l.CRISocket()),
			kv("hostname-override", h.NodeName),
			kv("node-ip", h.IP.String()),
			kv("root-dir", l.KubeletRoot()),
		},
		Health: "http://127.0.0.1:10248/healthz",
	}
}

// ProxyProcess starts either proxy with kube-proxy's flags. The mode is given
// both in the file and as a flag, with the same value, as the contract says.
func ProxyProcess(bin string, l Layout, h Host, mode string) Process {
	return Process{
		Name: "kube-proxy", Path: bin,
		Args: []string{
			kv("config", l.ProxyConfig()),
			kv("kubeconfig", l.Kubeconfig("kube-proxy")),
			kv("hostname-override", h.NodeName),
			kv("proxy-mode", mode),
		},
		Health: "http://127.0.0.1:10256/healthz",
	}
}

// KubeletConfig is the KubeletConfiguration both kubelets get. Everything the
// kubelet writes is kept under the layout; the settings below the comment
// lines are the machine's facts (cgroup v1 without systemd, no
// CAP_SYS_RESOURCE) and a disk shared with builds.
func KubeletConfig(l Layout) *kubeletv1beta1.KubeletConfiguration {
	pki := l.PKI()
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: filepath.Join(pki, "ca.crt")},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:      kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		TLSCertFile:        filepath.Join(pki, "kubelet-serving.crt"),
		TLSPrivateKeyFile:  filepath.Join(pki, "kubelet-serving.key"),
		HealthzBindAddress: "127.0.0.1",
		HealthzPort:        ptr.To[int32](10248),
		ClusterDNS:         []string{DNSServiceIP},
		ClusterDomain:      ClusterDomain,
		ResolverConfig:     ptr.To(l.ResolvConf()),
		StaticPodPath:      l.StaticPods(),
		PodLogsDir:         l.PodLogs(),
		VolumePluginDir:    l.VolumePlugins(),
		// Pods under a cgroup of our own, so down finds every container
		// process and nobody else's.
		CgroupRoot: "/" + CgroupParent,
		// cgroup v1, no systemd on this machine.
		CgroupDriver: "cgroupfs",
		FailCgroupV1: ptr.To(false),
		FailSwapOn:   ptr.To(false),
		// The disk is shared with multi-GB builds: only evict or collect
		// images when it is really full.
		EvictionHard: map[string]string{
			"memory.available":  "100Mi",
			"nodefs.available":  "1%",
			"imagefs.available": "1%",
		},
		ImageGCHighThresholdPercent: ptr.To[int32](99),
		ImageGCLowThresholdPercent:  ptr.To[int32](98),
		SerializeImagePulls:         ptr.To(false),
		// Images come from the local registry, never from the internet.
		ImageMinimumGCAge: metav1.Duration{Duration: 2 * time.Minute},
	}
}

// ProxyConfig is the KubeProxyConfiguration both proxies get. Conntrack
// sysctls are left alone (maxPerCore 0, timeouts 0) because they are
// host-wide; NodePorts listen only on the node's address so route_localnet
// is not turned on.
func ProxyConfig(l Layout, h Host, mode string) *kubeproxyv1alpha1.KubeProxyConfiguration {
	zero := metav1.Duration{}
	return &kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		ClientConnection:   componentbasev1alpha1.ClientConnectionConfiguration{Kubeconfig: l.Kubeconfig("kube-proxy")},
		HostnameOverride:   h.NodeName,
		BindAddress:        "0.0.0.0",
		HealthzBindAddress: "0.0.0.0:10256",
		MetricsBindAddress: "127.0.0.1:10249",
		Mode:               kubeproxyv1alpha1.ProxyMode(mode),
		ClusterCIDR:        PodCIDR,
		DetectLocalMode:    kubeproxyv1alpha1.LocalMode("ClusterCIDR"),
		NodePortAddresses:  []string{h.IP.String() + "/32"},
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{
			MaxPerCore:            ptr.To[int32](0),
			TCPEstablishedTimeout: &zero,
			TCPCloseWaitTimeout:   &zero,
		},
		IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{
			LocalhostNodePorts: ptr.To(false),
		},
	}
}

// MarshalConfig renders a config object as YAML.
func MarshalConfig(obj any) ([]byte, error) {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("marshal config: %w", err)
	}
	return b, nil
}

// ResolvConf is the resolv.conf every Pod with dnsPolicy Default (CoreDNS
// among them) gets. It names the host's own address: no DNS upstream is
// reachable from this machine and nothing may leave it, and 127.0.0.1 would
// be the Pod's own loopback. Nothing listens there, so external names fail
// at once (ICMP port unreachable) instead of timing out.
func ResolvConf(hostIP net.IP) string {
	return "nameserver " + hostIP.String() + "\noptions timeout:1 attempts:1\n"
}

// CNIConfList is the bridge + host-local + portmap + loopback network every
// Pod joins. host-local keeps its leases under the layout (not
// /var/lib/cni) so `down` can remove them.
func CNIConfList(l Layout, subnet string) string {
	gw := strings.Split(BridgeCIDR, "/")[0]
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "nodesuite",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`, BridgeName, l.CNIIPAMDir(), subnet, gw)
}
