package containerconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	utilsysctl "k8s.io/component-helpers/node/util/sysctl"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/cm"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// Node is what the CRI configs need to know about the node and its layout.
type Node struct {
	Name          string
	RootDir       string // --root-dir: pods/<uid>/... lives here
	PodLogsDir    string
	CgroupDriver  string // cgroupfs or systemd
	CgroupRoot    string // cgroupRoot: the kubepods hierarchy lives under it
	ClusterDNS    []string
	ClusterDomain string
	ResolvConf    string
	MemoryBytes   int64 // node capacity, for the Burstable oom_score_adj
	// SeccompDefault (config seccompDefault) runs containers that name no
	// seccomp profile under the runtime's default one.
	SeccompDefault bool
}

// QOS is the Pod's QoS class as upstream's GetPodQOS computes it; the pod
// cgroups (cm) are placed by the same function, so both agree.
func QOS(pod *v1.Pod) v1.PodQOSClass { return cm.QOSClass(pod) }

// CgroupParent is the Pod's cgroup under <cgroupRoot>/kubepods, by QoS class.
func CgroupParent(pod *v1.Pod, driver, root string) string {
	qos := QOS(pod)
	uid := string(pod.UID)
	if driver == "systemd" {
		id := strings.ReplaceAll(uid, "-", "_")
		switch qos {
		case v1.PodQOSGuaranteed:
			return "kubepods-pod" + id + ".slice"
		case v1.PodQOSBurstable:
			return "kubepods-burstable-pod" + id + ".slice"
		}
		return "kubepods-besteffort-pod" + id + ".slice"
	}
	base := strings.TrimSuffix(root, "/") + "/kubepods"
	switch qos {
	case v1.PodQOSGuaranteed:
		return base + "/pod" + uid
	case v1.PodQOSBurstable:
		return base + "/burstable/pod" + uid
	}
	return base + "/besteffort/pod" + uid
}

// Hostname and domain as upstream's GeneratePodHostNameAndDomain computes them.
// The API server has validated the names.
func Hostname(pod *v1.Pod, clusterDomain string) (string, string) {
	truncate := func(h string) string {
		if len(h) > 63 {
			h = strings.TrimRight(h[:63], "-.")
		}
		return h
	}
	if o := pod.Spec.HostnameOverride; o != nil { // GA in 1.37: the name as given, no domain
		return truncate(*o), ""
	}
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	h = truncate(h)
	domain := ""
	if pod.Spec.Subdomain != "" && clusterDomain != "" {
		domain = fmt.Sprintf("%s.%s.svc.%s", pod.Spec.Subdomain, pod.Namespace, clusterDomain)
	}
	return h, domain
}

// kernelHostname is the sandbox's hostname: the FQDN with setHostnameAsFQDN
// and a domain, which must fit the kernel's 64 bytes (upstream's
// GetNodenameForKernel, with its message).
func kernelHostname(pod *v1.Pod, clusterDomain string) (string, error) {
	h, domain := Hostname(pod, clusterDomain)
	if domain == "" || pod.Spec.SetHostnameAsFQDN == nil || !*pod.Spec.SetHostnameAsFQDN {
		return h, nil
	}
	const fqdnMaxLen = 64
	fqdn := h + "." + domain
	if len(fqdn) > fqdnMaxLen {
		return "", configErrorf("failed to construct FQDN from pod hostname and cluster domain, FQDN %s is too long (%d characters is the max, %d characters requested)",
			fqdn, fqdnMaxLen, len(fqdn))
	}
	return fqdn, nil
}

// DNS builds the sandbox's resolver config from dnsPolicy as the upstream
// kubelet's dns configurer does.
func DNS(pod *v1.Pod, n Node) (*runtimeapi.DNSConfig, error) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	if policy == v1.DNSClusterFirst && pod.Spec.HostNetwork {
		policy = v1.DNSDefault
	}
	if (policy == v1.DNSClusterFirst || policy == v1.DNSClusterFirstWithHostNet) && len(n.ClusterDNS) == 0 {
		policy = v1.DNSDefault // upstream falls back when no cluster DNS is configured
	}
	cfg := &runtimeapi.DNSConfig{}
	host, err := readResolvConf(n.ResolvConf)
	if err != nil {
		return nil, err
	}
	switch policy {
	case v1.DNSClusterFirst, v1.DNSClusterFirstWithHostNet:
		cfg.Servers = append([]string{}, n.ClusterDNS...)
		cfg.Searches = []string{pod.Namespace + ".svc." + n.ClusterDomain, "svc." + n.ClusterDomain, n.ClusterDomain}
		cfg.Searches = append(cfg.Searches, host.Searches...)
		cfg.Options = []string{"ndots:5"}
	case v1.DNSDefault:
		cfg.Servers, cfg.Searches, cfg.Options = host.Servers, host.Searches, host.Options
	case v1.DNSNone:
	}
	if pc := pod.Spec.DNSConfig; pc != nil {
		cfg.Servers = append(cfg.Servers, pc.Nameservers...)
		cfg.Searches = append(cfg.Searches, pc.Searches...)
		opts := map[string]int{}
		for i, o := range cfg.Options {
			name, _, _ := strings.Cut(o, ":")
			opts[name] = i
		}
		for _, o := range pc.Options {
			s := o.Name
			if o.Value != nil {
				s += ":" + *o.Value
			}
			if i, ok := opts[o.Name]; ok {
				cfg.Options[i] = s
			} else {
				cfg.Options = append(cfg.Options, s)
			}
		}
	}
	cfg.Searches = dedup(cfg.Searches)
	if len(cfg.Searches) > 32 {
		cfg.Searches = cfg.Searches[:32]
	}
	return cfg, nil
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func readResolvConf(path string) (*runtimeapi.DNSConfig, error) {
	cfg := &runtimeapi.DNSConfig{}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolvConf: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "nameserver":
			cfg.Servers = append(cfg.Servers, f[1])
		case "search", "domain":
			cfg.Searches = append(cfg.Searches, f[1:]...)
		case "options":
			cfg.Options = append(cfg.Options, f[1:]...)
		}
	}
	return cfg, nil
}

// SandboxConfig builds the PodSandboxConfig for attempt. userns is the
// Pod's user namespace (userns.Manager's GetOrCreate); its containers must
// be given the same one.
func SandboxConfig(pod *v1.Pod, attempt uint32, n Node, userns *runtimeapi.UserNamespace) (*runtimeapi.PodSandboxConfig, error) {
	ns, err := namespaces(pod, userns)
	if err != nil {
		return nil, err
	}
	dns, err := DNS(pod, n)
	if err != nil {
		return nil, err
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID), Attempt: attempt},
		LogDirectory: runtime.PodLogsDir(n.PodLogsDir, pod.Namespace, pod.Name, pod.UID),
		DnsConfig:    dns,
		Labels:       runtime.SandboxLabels(pod),
		Annotations:  pod.Annotations,
	}
	if !pod.Spec.HostNetwork {
		if cfg.Hostname, err = kernelHostname(pod, n.ClusterDomain); err != nil {
			return nil, err
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			cfg.PortMappings = append(cfg.PortMappings, &runtimeapi.PortMapping{Protocol: protocol(p.Protocol),
				ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	// Upstream runs every sandbox under the runtime's default seccomp
	// profile, whatever the Pod asks for its containers (kubernetes#84623).
	sc := &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns,
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}
	cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{}}
	if psc := pod.Spec.SecurityContext; psc != nil {
		for _, s := range psc.Sysctls {
			// "net/ipv4/..." names become dotted, as upstream sends them.
			cfg.Linux.Sysctls[utilsysctl.NormalizeName(s.Name)] = s.Value
		}
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		if psc.FSGroup != nil {
			sc.SupplementalGroups = append(sc.SupplementalGroups, *psc.FSGroup)
		}
		sc.SupplementalGroups = append(sc.SupplementalGroups, psc.SupplementalGroups...)
		if psc.SupplementalGroupsPolicy != nil {
			if sc.SupplementalGroupsPolicy, err = groupsPolicy(psc.SupplementalGroupsPolicy); err != nil {
				return nil, err
			}
		}
		sc.SelinuxOptions = seLinux(psc.SELinuxOptions)
	}
	for _, c := range append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			sc.Privileged = true
		}
	}
	cfg.Linux.CgroupParent = CgroupParent(pod, n.CgroupDriver, n.CgroupRoot)
	cfg.Linux.SecurityContext = sc
	return cfg, nil
}

// namespaces is the sandbox's and every container's NamespaceOption, as
// upstream's NamespacesForPod.
func namespaces(pod *v1.Pod, userns *runtimeapi.UserNamespace) (*runtimeapi.NamespaceOption, error) {
	// Running such a Pod in the host's user namespace would silently drop
	// the isolation it asked for. Mode POD is the zero value, so a nil
	// userns must not pass for one.
	if pod.Spec.HostUsers != nil && !*pod.Spec.HostUsers && (userns == nil || userns.Mode != runtimeapi.NamespaceMode_POD) {
		return nil, configErrorf("hostUsers: false: no user namespace was made for the pod")
	}
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD,
		UsernsOptions: userns}
	if pod.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostPID {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	} else if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return ns, nil
}

func protocol(p v1.Protocol) runtimeapi.Protocol {
	switch p {
	case v1.ProtocolUDP:
		return runtimeapi.Protocol_UDP
	case v1.ProtocolSCTP:
		return runtimeapi.Protocol_SCTP
	}
	return runtimeapi.Protocol_TCP
}

// PodDir is <root-dir>/pods/<uid>, where the kubelet keeps a Pod's files.
func PodDir(rootDir string, pod *v1.Pod) string {
	return filepath.Join(rootDir, "pods", string(pod.UID))
}
