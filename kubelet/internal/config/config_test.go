package config

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// harnessConfig is shaped like the local cluster's KubeletConfiguration
// (e2e/harness/cluster), marshalled the same way: every non-omitempty field
// is written, so zero values must be accepted.
func harnessConfig() *kubeletv1beta1.KubeletConfiguration {
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: "/pki/ca.crt"},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
		},
		Authorization:               kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		TLSCertFile:                 "/pki/kubelet-serving.crt",
		TLSPrivateKeyFile:           "/pki/kubelet-serving.key",
		HealthzBindAddress:          "127.0.0.1",
		HealthzPort:                 ptr.To[int32](10248),
		ClusterDNS:                  []string{"10.96.0.10"},
		ClusterDomain:               "cluster.local",
		ResolverConfig:              ptr.To("/c/resolv.conf"),
		StaticPodPath:               "/c/manifests",
		PodLogsDir:                  "/c/pod-logs",
		VolumePluginDir:             "/c/volume-plugins",
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
}

func TestDecodeHarnessConfig(t *testing.T) {
	data, err := yaml.Marshal(harnessConfig())
	if err != nil {
		t.Fatal(err)
	}
	kc, deferred, err := Decode(data)
	if err != nil {
		t.Fatalf("decode:\n%s\nerr: %v", data, err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var f Flags
	f.AddFlags(fs)
	if err := fs.Parse([]string{"--hostname-override=VM", "--node-ip=192.0.2.2", "--root-dir=/c/kubelet",
		"--container-runtime-endpoint=unix:///c/cri.sock", "--kubeconfig=/c/kubelet.kubeconfig"}); err != nil {
		t.Fatal(err)
	}
	c, err := Build(fs, &f, kc, "host")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{Kubeconfig: "/c/kubelet.kubeconfig", RuntimeEndpoint: "unix:///c/cri.sock", ImageEndpoint: "unix:///c/cri.sock",
		NodeName: "vm", NodeIPs: c.NodeIPs, RootDir: "/c/kubelet", StaticPodPath: "/c/manifests", PodLogsDir: "/c/pod-logs",
		RegisterNode: true, CgroupDriver: "cgroupfs", CgroupRoot: "/nodesuite", MaxPods: 110, ClusterDNS: []string{"10.96.0.10"},
		ClusterDomain: "cluster.local", ResolvConf: "/c/resolv.conf", HealthzBindAddress: "127.0.0.1:10248",
		NodeStatusUpdateFreq: 10 * time.Second, NodeStatusReportFreq: 5 * time.Minute, NodeLeaseDurationSeconds: 40,
		RuntimeRequestTimeout: 2 * time.Minute, SyncFrequency: time.Minute, FileCheckFrequency: 20 * time.Second,
		EvictionHard:        map[string]string{"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		SerializeImagePulls: false, MaxContainerRestart: 5 * time.Minute, FailCgroupV1: false,
		EnableServer: true, ContentType: "application/vnd.kubernetes.protobuf", EnableProfiling: true,
		KubeAPIQPS: 50, KubeAPIBurst: 100, EventRecordQPS: 50, EventBurst: 100,
		Address: "0.0.0.0", Port: 10250, TLSCertFile: "/pki/kubelet-serving.crt", TLSKeyFile: "/pki/kubelet-serving.key",
		Authentication: kubeletv1beta1.KubeletAuthentication{X509: kubeletv1beta1.KubeletX509Authentication{ClientCAFile: "/pki/ca.crt"},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)}},
		Authorization:           kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		UserNamespacesIDsPerPod: 65536, PodPidsLimit: -1, EvictionPressureTransitionPeriod: 5 * time.Minute}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	if c.NodeIPs[0].String() != "192.0.2.2" {
		t.Errorf("node ip %v", c.NodeIPs)
	}
	if len(deferred) == 0 {
		t.Errorf("server fields not reported as deferred")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       error
	}{
		{"unknown field", "noSuchField: 1", ErrInvalid},
		{"unsupported non-default", "cpuManagerPolicy: static", ErrUnsupportedField},
		{"unsupported runOnce", "runOnce: true", ErrUnsupportedField},
		{"bad cgroup driver", "cgroupDriver: nope", ErrInvalid},
	} {
		_, _, err := Decode([]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + tc.yaml + "\n"))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, _, err := Decode([]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicy: none\ncgroupsPerQOS: true\n")); err != nil {
		t.Errorf("defaults of unsupported fields: %v", err)
	}
}

func TestParseTaint(t *testing.T) {
	got, err := ParseTaint("dedicated=gpu:NoSchedule")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(v1.Taint{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule}, got); d != "" {
		t.Error(d)
	}
	if _, err := ParseTaint("x:Bad"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad effect: %v", err)
	}
}

// TestClientLimits: the file's API client settings are honoured; eventRecordQPS 0 means no limit.
func TestClientLimits(t *testing.T) {
	kc := harnessConfig()
	kc.KubeAPIQPS, kc.KubeAPIBurst = ptr.To[int32](7), 9
	kc.EventRecordQPS, kc.EventBurst = ptr.To[int32](0), 3
	kc.ContentType = "application/json"
	kc.EnableProfilingHandler = ptr.To(false)
	data, err := yaml.Marshal(kc)
	if err != nil {
		t.Fatal(err)
	}
	dec, _, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var f Flags
	f.AddFlags(fs)
	c, err := Build(fs, &f, dec, "host")
	if err != nil {
		t.Fatal(err)
	}
	type limits struct {
		QPS, EventQPS     float32
		Burst, EventBurst int
		ContentType       string
		Profiling         bool
	}
	got := limits{c.KubeAPIQPS, c.EventRecordQPS, c.KubeAPIBurst, c.EventBurst, c.ContentType, c.EnableProfiling}
	if d := cmp.Diff(limits{7, 0, 9, 3, "application/json", false}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestSysctlsAndSeccomp: allowedUnsafeSysctls and seccompDefault are honoured
// (not deferred); --allowed-unsafe-sysctls replaces the file's list, and
// --seccomp-default is ORed with the file's field, as upstream's server.go does.
func TestSysctlsAndSeccomp(t *testing.T) {
	type out struct {
		Sysctls  []string
		Seccomp  bool
		Deferred []string
	}
	for _, tc := range []struct {
		name, file string
		flags      []string
		want       out
		wantErr    error
	}{
		{"unset", "", nil, out{}, nil},
		{"file", "allowedUnsafeSysctls: [\"net.core.somaxconn\", \"kernel.msg*\"]\nseccompDefault: true", nil,
			out{Sysctls: []string{"net.core.somaxconn", "kernel.msg*"}, Seccomp: true}, nil},
		{"flags", "", []string{"--allowed-unsafe-sysctls=net.core.somaxconn,kernel/sem", "--seccomp-default"},
			out{Sysctls: []string{"net.core.somaxconn", "kernel/sem"}, Seccomp: true}, nil},
		{"flag list replaces file", "allowedUnsafeSysctls: [\"net.*\"]", []string{"--allowed-unsafe-sysctls=kernel.sem"},
			out{Sysctls: []string{"kernel.sem"}}, nil},
		{"seccomp flag false keeps file true", "seccompDefault: true", []string{"--seccomp-default=false"},
			out{Seccomp: true}, nil},
		{"with a deferred field", "seccompDefault: true\nmemorySwap: {swapBehavior: NoSwap}", nil,
			out{Seccomp: true, Deferred: []string{"memorySwap"}}, nil},
		{"not namespaced", "allowedUnsafeSysctls: [\"kernel.panic\"]", nil, out{}, ErrInvalid},
		{"bad flag pattern", "", []string{"--allowed-unsafe-sysctls=net.*.foo"}, out{}, ErrInvalid},
	} {
		c, deferred, err := buildFrom(t, tc.file, tc.flags)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.wantErr)
		}
		if err != nil {
			continue
		}
		if d := cmp.Diff(tc.want, out{c.AllowedUnsafeSysctls, c.SeccompDefault, deferred}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

// TestUserNamespacesIDsPerPod: userNamespaces is honoured (not deferred);
// idsPerPod defaults to 65536 and is validated as upstream's
// validation_linux.go does.
func TestUserNamespacesIDsPerPod(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       uint32
		wantErr    string
	}{
		{name: "unset", want: 65536},
		{name: "empty section", file: "userNamespaces: {}", want: 65536},
		{name: "set", file: "userNamespaces: {idsPerPod: 131072}", want: 131072},
		{name: "largest multiple", file: "userNamespaces: {idsPerPod: 4294901760}", want: 4294901760},
		{name: "zero", file: "userNamespaces: {idsPerPod: 0}",
			wantErr: "invalid kubelet configuration: userNamespaces.idsPerPod must not be less than 65536"},
		{name: "too small", file: "userNamespaces: {idsPerPod: 1024}",
			wantErr: "invalid kubelet configuration: userNamespaces.idsPerPod must not be less than 65536"},
		{name: "not a multiple", file: "userNamespaces: {idsPerPod: 100000}",
			wantErr: "invalid kubelet configuration: userNamespaces.idsPerPod must be a multiple of 65536"},
		{name: "too large", file: "userNamespaces: {idsPerPod: 4294967296}",
			wantErr: "invalid kubelet configuration: userNamespaces.idsPerPod must not be more than 4294967295"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, deferred, err := buildFrom(t, tc.file, nil)
			if len(deferred) != 0 {
				t.Errorf("deferred %v", deferred)
			}
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("err %v does not wrap ErrInvalid", err)
				}
			}
			if gotErr != tc.wantErr {
				t.Fatalf("err %q, want %q", gotErr, tc.wantErr)
			}
			if err == nil && c.UserNamespacesIDsPerPod != tc.want {
				t.Errorf("idsPerPod %d, want %d", c.UserNamespacesIDsPerPod, tc.want)
			}
		})
	}
}

// TestPodPidsLimit: the file's podPidsLimit, overridden by --pod-max-pids;
// neither means unlimited (-1), as upstream.
func TestPodPidsLimit(t *testing.T) {
	for _, tc := range []struct {
		file  string
		flags []string
		want  int64
	}{
		{"", nil, -1},
		{"podPidsLimit: 100", nil, 100},
		{"podPidsLimit: 100", []string{"--pod-max-pids=50"}, 50},
	} {
		c, _, err := buildFrom(t, tc.file, tc.flags)
		if err != nil {
			t.Fatal(err)
		}
		if c.PodPidsLimit != tc.want {
			t.Errorf("%q %v: PodPidsLimit = %d, want %d", tc.file, tc.flags, c.PodPidsLimit, tc.want)
		}
	}
}

// buildFrom decodes a KubeletConfiguration body (after apiVersion and kind)
// and builds the Config with flags, as the kubelet's start does.
func buildFrom(t *testing.T, file string, flags []string) (*Config, []string, error) {
	t.Helper()
	kc, deferred, err := Decode([]byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n" + file + "\n"))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var f Flags
	f.AddFlags(fs)
	if err := fs.Parse(flags); err != nil {
		t.Fatal(err)
	}
	c, err := Build(fs, &f, kc, "host")
	return c, deferred, err
}
