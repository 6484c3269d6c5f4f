package cluster

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	componentbasev1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/nodesuite/nodesuite/e2e/harness/runtime"
)

var (
	testLayout = Layout{Dir: "/r/_output/cluster", RunDir: "/run/nodesuite-cluster"}
	testHost   = Host{IP: net.ParseIP("192.0.2.2"), NodeName: "vm"}
)

func TestProcesses(t *testing.T) {
	l, h := testLayout, testHost
	pki := "/r/_output/cluster/pki/"
	tests := []struct {
		name string
		got  Process
		want Process
	}{
		{"etcd", EtcdProcess("/b/etcd", l), Process{
			Name: "etcd", Path: "/b/etcd", Health: "http://127.0.0.1:2381/health",
			Args: []string{
				"--name=nodesuite", "--data-dir=/r/_output/cluster/etcd",
				"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379",
				"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
				"--initial-cluster=nodesuite=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
				"--cert-file=" + pki + "etcd-server.crt", "--key-file=" + pki + "etcd-server.key",
				"--trusted-ca-file=" + pki + "etcd-ca.crt", "--client-cert-auth=true", "--unsafe-no-fsync=true",
			}}},
		{"kube-apiserver", APIServerProcess("/b/kube-apiserver", l, h), Process{
			Name: "kube-apiserver", Path: "/b/kube-apiserver", Health: "https://127.0.0.1:6443/readyz",
			Args: []string{
				"--advertise-address=192.0.2.2", "--bind-address=0.0.0.0", "--secure-port=6443",
				"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=" + pki + "etcd-ca.crt",
				"--etcd-certfile=" + pki + "apiserver-etcd-client.crt", "--etcd-keyfile=" + pki + "apiserver-etcd-client.key",
				"--client-ca-file=" + pki + "ca.crt", "--tls-cert-file=" + pki + "apiserver.crt", "--tls-private-key-file=" + pki + "apiserver.key",
				"--kubelet-client-certificate=" + pki + "apiserver-kubelet-client.crt", "--kubelet-client-key=" + pki + "apiserver-kubelet-client.key",
				"--kubelet-certificate-authority=" + pki + "ca.crt",
				"--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
				"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
				"--service-cluster-ip-range=10.96.0.0/16",
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--service-account-key-file=" + pki + "sa.pub", "--service-account-signing-key-file=" + pki + "sa.key",
				"--requestheader-client-ca-file=" + pki + "front-proxy-ca.crt", "--requestheader-allowed-names=front-proxy-client",
				"--requestheader-extra-headers-prefix=X-Remote-Extra-", "--requestheader-group-headers=X-Remote-Group",
				"--requestheader-username-headers=X-Remote-User",
				"--proxy-client-cert-file=" + pki + "front-proxy-client.crt", "--proxy-client-key-file=" + pki + "front-proxy-client.key",
				"--allow-privileged=true", "--profiling=false",
			}}},
		{"kube-controller-manager", ControllerManagerProcess("/b/kcm", l), Process{
			Name: "kube-controller-manager", Path: "/b/kcm", Health: "https://127.0.0.1:10257/healthz",
			Args: []string{
				"--kubeconfig=/r/_output/cluster/controller-manager.kubeconfig",
				"--authentication-kubeconfig=/r/_output/cluster/controller-manager.kubeconfig",
				"--authorization-kubeconfig=/r/_output/cluster/controller-manager.kubeconfig",
				"--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
				"--allocate-node-cidrs=true", "--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24",
				"--service-cluster-ip-range=10.96.0.0/16",
				"--cluster-signing-cert-file=" + pki + "ca.crt", "--cluster-signing-key-file=" + pki + "ca.key",
				"--root-ca-file=" + pki + "ca.crt", "--requestheader-client-ca-file=" + pki + "front-proxy-ca.crt",
				"--service-account-private-key-file=" + pki + "sa.key", "--use-service-account-credentials=true",
				"--controllers=*,bootstrapsigner,tokencleaner", "--flex-volume-plugin-dir=/r/_output/cluster/flexvolume",
			}}},
		{"kube-scheduler", SchedulerProcess("/b/sched", l), Process{
			Name: "kube-scheduler", Path: "/b/sched", Health: "https://127.0.0.1:10259/healthz",
			Args: []string{
				"--kubeconfig=/r/_output/cluster/scheduler.kubeconfig",
				"--authentication-kubeconfig=/r/_output/cluster/scheduler.kubeconfig",
				"--authorization-kubeconfig=/r/_output/cluster/scheduler.kubeconfig",
				"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false",
			}}},
		{"kubelet", KubeletProcess("/b/kubelet", l, h), Process{
			Name: "kubelet", Path: "/b/kubelet", Health: "http://127.0.0.1:10248/healthz",
			Args: []string{
				"--config=/r/_output/cluster/config/kubelet.yaml", "--kubeconfig=/r/_output/cluster/kubelet.kubeconfig",
				"--container-runtime-endpoint=unix:///run/nodesuite-cluster/cri.sock",
				"--hostname-override=vm", "--node-ip=192.0.2.2", "--root-dir=/r/_output/cluster/kubelet",
			}}},
		{"kube-proxy", ProxyProcess("/b/kube-proxy", l, h, "iptables"), Process{
			Name: "kube-proxy", Path: "/b/kube-proxy", Health: "http://127.0.0.1:10256/healthz",
			Args: []string{
				"--config=/r/_output/cluster/config/kube-proxy.yaml", "--kubeconfig=/r/_output/cluster/kube-proxy.kubeconfig",
				"--hostname-override=vm", "--proxy-mode=iptables",
			}}},
		{"containerd", ContainerdProcess("/b/containerd", l), Process{
			Name: "containerd", Path: "/b/containerd", Args: []string{"--config=/r/_output/cluster/config/containerd.toml"}}},
		{"runtime-shim", RuntimeShimProcess("/o/runtime-shim", l, RuntimePaths{CNIBinDir: "/c/cni/bin", RegistryHostsDir: "/h"}), Process{
			Name: "runtime-shim", Path: "/o/runtime-shim", Health: "http://127.0.0.1:10359/readyz",
			Args: []string{
				"--socket=/run/nodesuite-cluster/cri.sock", "--containerd-address=/run/nodesuite-cluster/containerd.sock",
				"--containerd-namespace=k8s.io", "--sandbox-image=registry.k8s.io/pause:3.10.2",
				"--cni-conf-dir=/r/_output/cluster/cni/net.d", "--cni-bin-dir=/c/cni/bin", "--registry-config-dir=/h",
				"--root-dir=/r/_output/cluster/runtime/shim-root", "--state-dir=/run/nodesuite-cluster/shim-state",
				"--streaming-address=127.0.0.1:0", "--cgroup-driver=cgroupfs", "--ops-bind-address=127.0.0.1:10359",
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, tt.got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestKubeletConfig(t *testing.T) {
	pki := "/r/_output/cluster/pki/"
	want := &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: pki + "ca.crt"},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:               kubeletv1beta1.KubeletAuthorization{Mode: "Webhook"},
		TLSCertFile:                 pki + "kubelet-serving.crt",
		TLSPrivateKeyFile:           pki + "kubelet-serving.key",
		HealthzBindAddress:          "127.0.0.1",
		HealthzPort:                 ptr.To[int32](10248),
		ClusterDNS:                  []string{"10.96.0.10"},
		ClusterDomain:               "cluster.local",
		ResolverConfig:              ptr.To("/r/_output/cluster/config/resolv.conf"),
		StaticPodPath:               "/r/_output/cluster/manifests",
		PodLogsDir:                  "/r/_output/cluster/pod-logs",
		VolumePluginDir:             "/r/_output/cluster/volume-plugins",
		CgroupRoot:                  "/nodesuite",
		CgroupDriver:                "cgroupfs",
		FailCgroupV1:                ptr.To(false),
		FailSwapOn:                  ptr.To(false),
		EvictionHard:                map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		ImageGCHighThresholdPercent: ptr.To[int32](99),
		ImageGCLowThresholdPercent:  ptr.To[int32](98),
		SerializeImagePulls:         ptr.To(false),
		ImageMinimumGCAge:           metav1.Duration{Duration: 2 * time.Minute},
	}
	got := KubeletConfig(testLayout)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// The file the kubelet reads must round-trip to the same value.
	b, err := MarshalConfig(got)
	if err != nil {
		t.Fatal(err)
	}
	var back kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, &back); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
}

func TestProxyConfig(t *testing.T) {
	zero := metav1.Duration{}
	for _, mode := range []string{"iptables", "nftables"} {
		want := &kubeproxyv1alpha1.KubeProxyConfiguration{
			TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
			ClientConnection:   componentbasev1alpha1.ClientConnectionConfiguration{Kubeconfig: "/r/_output/cluster/kube-proxy.kubeconfig"},
			HostnameOverride:   "vm",
			BindAddress:        "0.0.0.0",
			HealthzBindAddress: "0.0.0.0:10256",
			MetricsBindAddress: "127.0.0.1:10249",
			Mode:               kubeproxyv1alpha1.ProxyMode(mode),
			ClusterCIDR:        "10.244.0.0/16",
			DetectLocalMode:    "ClusterCIDR",
			NodePortAddresses:  []string{"192.0.2.2/32"},
			Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{
				MaxPerCore: ptr.To[int32](0), TCPEstablishedTimeout: &zero, TCPCloseWaitTimeout: &zero,
			},
			IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{LocalhostNodePorts: ptr.To(false)},
		}
		if d := cmp.Diff(want, ProxyConfig(testLayout, testHost, mode)); d != "" {
			t.Errorf("%s (-want +got):\n%s", mode, d)
		}
	}
}

func TestSmallFiles(t *testing.T) {
	if d := cmp.Diff("nameserver 192.0.2.2\noptions timeout:1 attempts:1\n", ResolvConf(testHost.IP)); d != "" {
		t.Errorf("resolv.conf (-want +got):\n%s", d)
	}
	wantCNI := `{
  "cniVersion": "1.0.0",
  "name": "nodesuite",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "nodesuite0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "/r/_output/cluster/cni/ipam",
        "ranges": [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`
	if d := cmp.Diff(wantCNI, CNIConfList(testLayout, NodePodCIDR)); d != "" {
		t.Errorf("conflist (-want +got):\n%s", d)
	}
}

// TestContainerdParams: the cluster's containerd keeps its root under the
// checkout and its state and sockets under RunDir; the config text itself is
// runtime.ContainerdConfig's (tested there).
func TestContainerdParams(t *testing.T) {
	p := RuntimePaths{Runc: "/b/runc", CNIBinDir: "/c/cni/bin", RegistryHostsDir: "/h"}
	want := runtime.ContainerdParams{
		Paths: runtime.ContainerdPaths{
			Root: "/r/_output/cluster/runtime/root", State: "/run/nodesuite-cluster/containerd",
			Socket: "/run/nodesuite-cluster/containerd.sock", ShimSocketDir: "/run/nodesuite-cluster/s",
			Opt: "/r/_output/cluster/runtime/root/opt", RuncRoot: "/run/nodesuite-cluster/runc",
			RegistryConfigDir: "/h", CNIConfDir: "/r/_output/cluster/cni/net.d",
		},
		CRI: true, RuncBinary: "/b/runc", CNIBinDir: "/c/cni/bin", SandboxImage: "registry.k8s.io/pause:3.10.2",
	}
	if d := cmp.Diff(want, ContainerdParams(testLayout, p, true)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got := ContainerdParams(testLayout, p, false); got.CRI {
		t.Errorf("CRI on although our runtime-shim serves it")
	}
}

func TestCheckOurs(t *testing.T) {
	exists := func(have ...string) func(string) error {
		return func(p string) error {
			for _, h := range have {
				if p == h {
					return nil
				}
			}
			return os.ErrNotExist
		}
	}
	tests := []struct {
		name string
		opts Options
		have []string
		want []string // error lines
	}{
		{"all upstream never checks", Options{RepoRoot: "/r", Kubelet: Upstream, Runtime: Upstream, Proxy: Upstream}, nil, nil},
		{"ours without marker", Options{RepoRoot: "/r", Kubelet: Ours, Runtime: Upstream, Proxy: Ours}, []string{"/r/_output/bin/kubelet"},
			[]string{
				"component not ready: our kubelet is not ready yet (no /r/kubelet/READY_FOR_HARNESS); use KUBELET=upstream",
				"component not ready: our proxy is not ready yet (no /r/proxy/READY_FOR_HARNESS); use PROXY=upstream",
			}},
		{"marker without binary", Options{RepoRoot: "/r", Kubelet: Upstream, Runtime: Ours, Proxy: Upstream}, []string{"/r/runtime-shim/READY_FOR_HARNESS"},
			[]string{"component not ready: our runtime-shim is not built (no /r/_output/bin/runtime-shim); run make build or use RUNTIME=containerd"}},
		{"ready", Options{RepoRoot: "/r", Kubelet: Ours, Runtime: Upstream, Proxy: Upstream}, []string{"/r/kubelet/READY_FOR_HARNESS", "/r/_output/bin/kubelet"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.CheckOurs(exists(tt.have...))
			var got []string
			if err != nil {
				if !errors.Is(err, ErrNotReady) {
					t.Errorf("error %v is not ErrNotReady", err)
				}
				got = strings.Split(err.Error(), "\n")
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
