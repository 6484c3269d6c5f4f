// Package config holds the kubelet's flags and its KubeletConfiguration file
// (kubelet.config.k8s.io/v1beta1), decoded strictly with the upstream types.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/nodesuite/nodesuite/kubelet/internal/admission"
	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// ErrUnsupportedField marks a configuration field this kubelet does not implement.
var ErrUnsupportedField = errors.New("unsupported KubeletConfiguration field")

// ErrInvalid marks a value that is not acceptable.
var ErrInvalid = errors.New("invalid kubelet configuration")

// Flags are the command-line flags, named as the upstream kubelet names them.
type Flags struct {
	Kubeconfig               string
	ConfigFile               string
	ContainerRuntimeEndpoint string
	ImageServiceEndpoint     string
	HostnameOverride         string
	NodeIP                   string
	RootDir                  string
	PodManifestPath          string
	NodeLabels               map[string]string
	RegisterWithTaints       []string
	CgroupDriver             string
	MaxPods                  int32
	ClusterDNS               []string
	ClusterDomain            string
	ResolvConf               string
	PodInfraContainerImage   string
	AllowedUnsafeSysctls     []string
	SeccompDefault           bool
	PodMaxPids               int64
}

// AddFlags registers the flags on fs. --healthz-bind-address is registered by
// the ops server options; the config file's healthzBindAddress is applied there.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig file; empty runs standalone (static Pods only).")
	fs.StringVar(&f.ConfigFile, "config", "", "Path to a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) file.")
	fs.StringVar(&f.ContainerRuntimeEndpoint, "container-runtime-endpoint", "", "CRI runtime endpoint (unix:///path).")
	fs.StringVar(&f.ImageServiceEndpoint, "image-service-endpoint", "", "CRI image endpoint; defaults to --container-runtime-endpoint.")
	fs.StringVar(&f.HostnameOverride, "hostname-override", "", "Node name to use instead of the hostname.")
	fs.StringVar(&f.NodeIP, "node-ip", "", "Comma-separated IP addresses of the node.")
	fs.StringVar(&f.RootDir, "root-dir", "/var/lib/kubelet", "Directory for the kubelet's files.")
	fs.StringVar(&f.PodManifestPath, "pod-manifest-path", "", "Directory of static Pod manifests (deprecated upstream: use staticPodPath).")
	fs.StringToStringVar(&f.NodeLabels, "node-labels", nil, "Labels to add when registering the Node (key=value,...).")
	fs.StringSliceVar(&f.RegisterWithTaints, "register-with-taints", nil, "Taints to register the Node with (key=value:Effect,...).")
	fs.StringVar(&f.CgroupDriver, "cgroup-driver", "", "cgroupfs or systemd (config: cgroupDriver).")
	fs.Int32Var(&f.MaxPods, "max-pods", 0, "Most Pods this node runs (config: maxPods).")
	fs.StringSliceVar(&f.ClusterDNS, "cluster-dns", nil, "Cluster DNS server IPs (config: clusterDNS).")
	fs.StringVar(&f.ClusterDomain, "cluster-domain", "", "Cluster domain (config: clusterDomain).")
	fs.StringVar(&f.ResolvConf, "resolv-conf", "", "Resolver configuration for Default DNS (config: resolvConf).")
	fs.StringVar(&f.PodInfraContainerImage, "pod-infra-container-image", "", "Ignored as upstream ignores it: the runtime chooses the sandbox image.")
	fs.StringSliceVar(&f.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", nil, "Comma-separated whitelist of unsafe sysctls or unsafe sysctl patterns (ending in *). Use these at your own risk. (config: allowedUnsafeSysctls)")
	fs.Int64Var(&f.PodMaxPids, "pod-max-pids", -1, "Set the maximum number of processes per pod.  If -1, the kubelet defaults to the node allocatable pid capacity. (config: podPidsLimit)")
	fs.BoolVar(&f.SeccompDefault, "seccomp-default", false, "Enable the use of `RuntimeDefault` as the default seccomp profile for all workloads. (config: seccompDefault)")
}

// Config is everything the kubelet runs with, after flags override the file.
type Config struct {
	Kubeconfig               string
	RuntimeEndpoint          string
	ImageEndpoint            string
	NodeName                 string
	NodeIPs                  []net.IP
	RootDir                  string
	StaticPodPath            string
	PodLogsDir               string
	NodeLabels               map[string]string
	Taints                   []v1.Taint
	RegisterNode             bool
	CgroupDriver             string
	CgroupRoot               string
	MaxPods                  int32
	PodCIDR                  string
	ClusterDNS               []string
	ClusterDomain            string
	ResolvConf               string
	HealthzBindAddress       string // empty keeps the flag's value
	NodeStatusUpdateFreq     time.Duration
	NodeStatusReportFreq     time.Duration
	NodeLeaseDurationSeconds int32
	RuntimeRequestTimeout    time.Duration
	SyncFrequency            time.Duration
	FileCheckFrequency       time.Duration
	SystemReserved           map[string]string
	KubeReserved             map[string]string
	EvictionHard             map[string]string
	SerializeImagePulls      bool
	MaxContainerRestart      time.Duration
	// FailCgroupV1 refuses cgroup v1 hosts; true unless the file says false, as upstream.
	FailCgroupV1 bool
	// The kubelet API server (:10250).
	EnableServer bool
	// KubeAPIQPS and KubeAPIBurst limit the API client, EventRecordQPS
	// (0: no limit) and EventBurst the Events client; upstream's defaults
	// 50/100 and 50/100.
	KubeAPIQPS, EventRecordQPS float32
	KubeAPIBurst, EventBurst   int
	// ContentType of requests to the API server; protobuf unless the file says otherwise, as upstream.
	ContentType string
	// EnableProfiling serves /debug/pprof/ on it; true unless the file says false, as upstream.
	EnableProfiling bool
	Address         string
	Port            int32
	TLSCertFile     string
	TLSKeyFile      string
	Authentication  kubeletv1beta1.KubeletAuthentication
	Authorization   kubeletv1beta1.KubeletAuthorization
	// AllowedUnsafeSysctls are sysctls and "prefix*" patterns Pods may set
	// besides the safe ones.
	AllowedUnsafeSysctls []string
	// SeccompDefault makes RuntimeDefault the seccomp profile of containers
	// that name none.
	SeccompDefault bool
	// UserNamespacesIDsPerPod (userNamespaces.idsPerPod) is how many UIDs
	// and GIDs each Pod with hostUsers: false gets.
	UserNamespacesIDsPerPod uint32
	// PodPidsLimit (podPidsLimit, --pod-max-pids) is each pod cgroup's
	// pids.max; -1 is unlimited.
	PodPidsLimit int64
	// EvictionPressureTransitionPeriod is how long a pressure condition
	// stays after its signal recovers.
	EvictionPressureTransitionPeriod time.Duration
}

// honoured are the file's fields this kubelet acts on.
var honoured = set("kind", "apiVersion", "staticPodPath", "podLogsDir", "clusterDNS", "clusterDomain", "resolvConf",
	"cgroupDriver", "cgroupRoot", "failCgroupV1", "maxPods", "podCIDR", "registerWithTaints", "registerNode",
	"containerRuntimeEndpoint", "imageServiceEndpoint", "nodeStatusUpdateFrequency", "nodeStatusReportFrequency",
	"nodeLeaseDurationSeconds", "runtimeRequestTimeout", "healthzBindAddress", "healthzPort", "syncFrequency",
	"fileCheckFrequency", "systemReserved", "kubeReserved", "evictionHard", "serializeImagePulls", "crashLoopBackOff",
	"address", "port", "authentication", "authorization", "tlsCertFile", "tlsPrivateKeyFile", "enableServer",
	"enableProfilingHandler", "contentType", "kubeAPIQPS", "kubeAPIBurst", "eventRecordQPS", "eventBurst", "podPidsLimit",
	"evictionPressureTransitionPeriod",
	"allowedUnsafeSysctls", "seccompDefault", "userNamespaces")

// deferred are fields of the kubelet's HTTPS server (part 2 of the kubelet
// issue) and tuning knobs with no observable contract; they are accepted so a
// config written for the upstream kubelet runs, and say so in the log.
var deferred = set("readOnlyPort", "tlsCipherSuites", "tlsMinVersion", "rotateCertificates", "serverTLSBootstrap",
	"enableServer", "enableDebuggingHandlers", "volumePluginDir", "registryPullQPS", "registryBurst", "maxParallelImagePulls", "logging",
	"streamingConnectionIdleTimeout", "imageMinimumGCAge", "imageMaximumGCAge", "imageGCHighThresholdPercent",
	"imageGCLowThresholdPercent", "volumeStatsAggPeriod", "containerLogMaxSize", "containerLogMaxFiles",
	"containerLogMaxWorkers", "containerLogMonitorInterval",
	"hairpinMode", "cpuCFSQuota", "cpuCFSQuotaPeriod", "nodeStatusMaxImages", "maxOpenFiles",
	"shutdownGracePeriod", "shutdownGracePeriodCriticalPods", "enableDebugFlagsHandler",
	"enableSystemLogHandler", "enableSystemLogQuery", "oomScoreAdj", "httpCheckFrequency", "failSwapOn",
	"memorySwap", "protectKernelDefaults", "makeIPTablesUtilChains", "iptablesMasqueradeBit", "iptablesDropBit",
	"enableControllerAttachDetach", "configMapAndSecretChangeDetectionStrategy", "localStorageCapacityIsolation",
	"kernelMemcgNotification", "evictionMaxPodGracePeriod")

// defaults are upstream defaults of fields this kubelet does not implement:
// setting them to exactly these values changes nothing, so it is accepted.
var defaults = map[string]any{
	"cgroupsPerQOS":          true,
	"enforceNodeAllocatable": []any{"pods"},
	"cpuManagerPolicy":       "none",
	"memoryManagerPolicy":    "None",
	"topologyManagerPolicy":  "none",
	"topologyManagerScope":   "container",
	"runOnce":                false,
	"featureGates":           map[string]any{},
	"podsPerCore":            float64(0),
	"providerID":             "",
	"staticPodURL":           "",
}

func set(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, k := range s {
		m[k] = true
	}
	return m
}

// LoadFile decodes a KubeletConfiguration strictly: an unknown field is an
// error, and so is a field this kubelet does not implement unless it holds the
// upstream default. It returns the decoded file and the deferred fields set.
func LoadFile(path string) (*kubeletv1beta1.KubeletConfiguration, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read kubelet config: %w", err)
	}
	return Decode(data)
}

// Decode is LoadFile on bytes.
func Decode(data []byte) (*kubeletv1beta1.KubeletConfiguration, []string, error) {
	var kc kubeletv1beta1.KubeletConfiguration
	if err := yaml.UnmarshalStrict(data, &kc); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if kc.Kind != "KubeletConfiguration" || kc.APIVersion != kubeletv1beta1.SchemeGroupVersion.String() {
		return nil, nil, fmt.Errorf("%w: want kind KubeletConfiguration apiVersion %s, got %q %q", ErrInvalid,
			kubeletv1beta1.SchemeGroupVersion, kc.Kind, kc.APIVersion)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var deferredSet []string
	for _, k := range keys {
		switch {
		case honoured[k]:
		case deferred[k]:
			deferredSet = append(deferredSet, k)
		default:
			def, ok := defaults[k]
			if !isZero(raw[k]) && (!ok || !sameJSON(def, raw[k])) {
				return nil, nil, fmt.Errorf("%w: %s", ErrUnsupportedField, k)
			}
		}
	}
	if kc.CgroupDriver != "" && kc.CgroupDriver != "cgroupfs" && kc.CgroupDriver != "systemd" {
		return nil, nil, fmt.Errorf("%w: cgroupDriver %q: want cgroupfs or systemd", ErrInvalid, kc.CgroupDriver)
	}
	return &kc, deferredSet, nil
}

// isZero tells a value that means "unset" (the upstream kubelet then applies
// its default): what a marshalled Go struct writes for fields never set.
func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == "" || x == "0s" || x == "0"
	case float64:
		return x == 0
	case bool:
		return !x
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !isZero(e) {
				return false
			}
		}
		return true
	}
	return false
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if bytes.Equal(ja, jb) {
		return true
	}
	// An empty list or map is the same as the default's empty value.
	return reflect.ValueOf(b).Kind() == reflect.Slice && reflect.ValueOf(b).Len() == 0 && string(ja) == "[]" ||
		reflect.ValueOf(b).Kind() == reflect.Map && reflect.ValueOf(b).Len() == 0 && string(ja) == "{}"
}

// Build merges flags (which win when set) over the file and fills upstream defaults.
func Build(fs *pflag.FlagSet, f *Flags, kc *kubeletv1beta1.KubeletConfiguration, hostname string) (*Config, error) {
	if kc == nil {
		kc = &kubeletv1beta1.KubeletConfiguration{}
	}
	c := &Config{
		Kubeconfig:                       f.Kubeconfig,
		RootDir:                          f.RootDir,
		RuntimeEndpoint:                  kc.ContainerRuntimeEndpoint,
		ImageEndpoint:                    kc.ImageServiceEndpoint,
		StaticPodPath:                    kc.StaticPodPath,
		PodLogsDir:                       kc.PodLogsDir,
		NodeLabels:                       f.NodeLabels,
		RegisterNode:                     kc.RegisterNode == nil || *kc.RegisterNode,
		CgroupDriver:                     kc.CgroupDriver,
		CgroupRoot:                       kc.CgroupRoot,
		MaxPods:                          kc.MaxPods,
		PodCIDR:                          kc.PodCIDR,
		ClusterDNS:                       kc.ClusterDNS,
		ClusterDomain:                    kc.ClusterDomain,
		ResolvConf:                       derefStr(kc.ResolverConfig, "/etc/resolv.conf"),
		NodeStatusUpdateFreq:             durOr(kc.NodeStatusUpdateFrequency, 10*time.Second),
		NodeStatusReportFreq:             durOr(kc.NodeStatusReportFrequency, 5*time.Minute),
		NodeLeaseDurationSeconds:         kc.NodeLeaseDurationSeconds,
		RuntimeRequestTimeout:            durOr(kc.RuntimeRequestTimeout, 2*time.Minute),
		SyncFrequency:                    durOr(kc.SyncFrequency, time.Minute),
		FileCheckFrequency:               durOr(kc.FileCheckFrequency, 20*time.Second),
		SystemReserved:                   kc.SystemReserved,
		KubeReserved:                     kc.KubeReserved,
		EvictionHard:                     kc.EvictionHard,
		SerializeImagePulls:              kc.SerializeImagePulls == nil || *kc.SerializeImagePulls,
		MaxContainerRestart:              5 * time.Minute,
		Taints:                           kc.RegisterWithTaints,
		FailCgroupV1:                     kc.FailCgroupV1 == nil || *kc.FailCgroupV1,
		EnableServer:                     kc.EnableServer == nil || *kc.EnableServer,
		EnableProfiling:                  kc.EnableProfilingHandler == nil || *kc.EnableProfilingHandler,
		ContentType:                      kc.ContentType,
		KubeAPIQPS:                       float32(ptr.Deref(kc.KubeAPIQPS, 50)),
		KubeAPIBurst:                     int(kc.KubeAPIBurst),
		EventRecordQPS:                   float32(ptr.Deref(kc.EventRecordQPS, 50)),
		EventBurst:                       int(kc.EventBurst),
		Address:                          kc.Address,
		Port:                             kc.Port,
		TLSCertFile:                      kc.TLSCertFile,
		TLSKeyFile:                       kc.TLSPrivateKeyFile,
		Authentication:                   kc.Authentication,
		Authorization:                    kc.Authorization,
		AllowedUnsafeSysctls:             kc.AllowedUnsafeSysctls,
		SeccompDefault:                   ptr.Deref(kc.SeccompDefault, false),
		PodPidsLimit:                     ptr.Deref(kc.PodPidsLimit, -1),
		EvictionPressureTransitionPeriod: durOr(kc.EvictionPressureTransitionPeriod, 5*time.Minute),
	}
	if c.KubeAPIBurst == 0 {
		c.KubeAPIBurst = 100
	}
	if c.EventBurst == 0 {
		c.EventBurst = 100
	}
	if c.ContentType == "" {
		c.ContentType = apiruntime.ContentTypeProtobuf
	}
	if c.Address == "" {
		c.Address = "0.0.0.0"
	}
	if c.Port == 0 {
		c.Port = 10250
	}
	// Upstream's defaults: webhook authentication and authorization.
	if c.Authentication.Webhook.Enabled == nil {
		c.Authentication.Webhook.Enabled = ptr.To(true)
	}
	if c.Authentication.Anonymous.Enabled == nil {
		c.Authentication.Anonymous.Enabled = ptr.To(false)
	}
	if c.Authorization.Mode == "" {
		c.Authorization.Mode = kubeletv1beta1.KubeletAuthorizationModeWebhook
	}
	if kc.CrashLoopBackOff.MaxContainerRestartPeriod != nil {
		c.MaxContainerRestart = kc.CrashLoopBackOff.MaxContainerRestartPeriod.Duration
	}
	if kc.HealthzBindAddress != "" || kc.HealthzPort != nil {
		host := kc.HealthzBindAddress
		if host == "" {
			host = "127.0.0.1"
		}
		port := int32(10248)
		if kc.HealthzPort != nil {
			port = *kc.HealthzPort
		}
		c.HealthzBindAddress = net.JoinHostPort(host, fmt.Sprint(port))
	}
	changed := func(n string) bool { return fs.Changed(n) }
	if changed("container-runtime-endpoint") {
		c.RuntimeEndpoint = f.ContainerRuntimeEndpoint
	}
	if changed("image-service-endpoint") {
		c.ImageEndpoint = f.ImageServiceEndpoint
	}
	if changed("pod-manifest-path") {
		c.StaticPodPath = f.PodManifestPath
	}
	if changed("cgroup-driver") {
		c.CgroupDriver = f.CgroupDriver
	}
	if changed("max-pods") {
		c.MaxPods = f.MaxPods
	}
	if changed("cluster-dns") {
		c.ClusterDNS = f.ClusterDNS
	}
	if changed("cluster-domain") {
		c.ClusterDomain = f.ClusterDomain
	}
	if changed("resolv-conf") {
		c.ResolvConf = f.ResolvConf
	}
	if changed("pod-max-pids") {
		c.PodPidsLimit = f.PodMaxPids
	}
	if changed("allowed-unsafe-sysctls") {
		c.AllowedUnsafeSysctls = f.AllowedUnsafeSysctls
	}
	// Upstream's --seccomp-default is a flag of its own, ORed with the file's
	// field: the flag can turn the default on, not off.
	if f.SeccompDefault {
		c.SeccompDefault = true
	}
	if changed("register-with-taints") {
		c.Taints = nil
		for _, s := range f.RegisterWithTaints {
			t, err := ParseTaint(s)
			if err != nil {
				return nil, err
			}
			c.Taints = append(c.Taints, t)
		}
	}
	if c.RuntimeEndpoint == "" {
		c.RuntimeEndpoint = "unix:///run/containerd/containerd.sock"
	}
	if c.ImageEndpoint == "" {
		c.ImageEndpoint = c.RuntimeEndpoint
	}
	if c.PodLogsDir == "" {
		c.PodLogsDir = "/var/log/pods"
	}
	if c.CgroupDriver == "" {
		c.CgroupDriver = "cgroupfs"
	}
	if c.CgroupDriver != "cgroupfs" && c.CgroupDriver != "systemd" {
		return nil, fmt.Errorf("%w: --cgroup-driver %q: want cgroupfs or systemd", ErrInvalid, c.CgroupDriver)
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
	if c.NodeLeaseDurationSeconds == 0 {
		c.NodeLeaseDurationSeconds = 40
	}
	c.NodeName = strings.ToLower(strings.TrimSpace(hostname))
	if f.HostnameOverride != "" {
		c.NodeName = strings.ToLower(strings.TrimSpace(f.HostnameOverride))
	}
	if c.NodeName == "" {
		return nil, fmt.Errorf("%w: empty node name", ErrInvalid)
	}
	if f.NodeIP != "" {
		for _, s := range strings.Split(f.NodeIP, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return nil, fmt.Errorf("%w: --node-ip %q is not an IP address", ErrInvalid, s)
			}
			c.NodeIPs = append(c.NodeIPs, ip)
		}
	}
	ids, err := idsPerPod(kc.UserNamespaces)
	if err != nil {
		return nil, err
	}
	c.UserNamespacesIDsPerPod = ids
	// Upstream refuses to start with a pattern its sysctl allowlist cannot take.
	if err := admission.ValidateAllowedUnsafeSysctls(c.AllowedUnsafeSysctls); err != nil {
		return nil, fmt.Errorf("%w: allowedUnsafeSysctls: %w", ErrInvalid, err)
	}
	for _, s := range c.ClusterDNS {
		if net.ParseIP(s) == nil {
			return nil, fmt.Errorf("%w: clusterDNS %q is not an IP address", ErrInvalid, s)
		}
	}
	return c, nil
}

// userNsUnitLength is the granularity of user namespace ID ranges.
const userNsUnitLength = 65536

// idsPerPod is userNamespaces.idsPerPod, 65536 when unset, validated with
// upstream's texts (validation_linux.go).
func idsPerPod(u *kubeletv1beta1.UserNamespaces) (uint32, error) {
	if u == nil || u.IDsPerPod == nil {
		return userNsUnitLength, nil
	}
	switch n := *u.IDsPerPod; {
	case n < userNsUnitLength:
		return 0, fmt.Errorf("%w: userNamespaces.idsPerPod must not be less than %d", ErrInvalid, userNsUnitLength)
	case n%userNsUnitLength != 0:
		return 0, fmt.Errorf("%w: userNamespaces.idsPerPod must be a multiple of %d", ErrInvalid, userNsUnitLength)
	case n > math.MaxUint32:
		return 0, fmt.Errorf("%w: userNamespaces.idsPerPod must not be more than %d", ErrInvalid, int64(math.MaxUint32))
	default:
		return uint32(n), nil
	}
}

// ParseTaint parses key[=value]:Effect as kubectl and the kubelet do.
func ParseTaint(s string) (v1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if !ok {
		return v1.Taint{}, fmt.Errorf("%w: taint %q: want key[=value]:Effect", ErrInvalid, s)
	}
	k, val, _ := strings.Cut(kv, "=")
	switch e := v1.TaintEffect(effect); e {
	case v1.TaintEffectNoSchedule, v1.TaintEffectPreferNoSchedule, v1.TaintEffectNoExecute:
		return v1.Taint{Key: k, Value: val, Effect: e}, nil
	}
	return v1.Taint{}, fmt.Errorf("%w: taint %q: unknown effect %q", ErrInvalid, s, effect)
}

func derefStr(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

func durOr(d metav1.Duration, def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}
