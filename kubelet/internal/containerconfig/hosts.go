package containerconfig

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	v1 "k8s.io/api/core/v1"
)

const etcHosts = "/etc/hosts"

// HostsFile is the /etc/hosts the kubelet manages for a Pod, byte for byte
// as upstream's managedHostsFileContent (or, on the host network, the
// node's file under its own header), with the Pod's hostAliases appended.
func HostsFile(pod *v1.Pod, podIPs []string, clusterDomain string, nodeHosts []byte) []byte {
	var b bytes.Buffer
	if pod.Spec.HostNetwork {
		b.WriteString("# Kubernetes-managed hosts file (host network).\n")
		b.Write(nodeHosts)
	} else {
		name, domain := Hostname(pod, clusterDomain)
		b.WriteString("# Kubernetes-managed hosts file.\n")
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		for _, ip := range podIPs {
			if domain != "" {
				fmt.Fprintf(&b, "%s\t%s.%s\t%s\n", ip, name, domain, name)
			} else {
				fmt.Fprintf(&b, "%s\t%s\n", ip, name)
			}
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}

// hostsMount writes the Pod's hosts file and returns its mount, unless the
// container mounts its own /etc/hosts or the Pod has no IP yet (as upstream).
func hostsMount(h Host, in ContainerInput) (string, bool, error) {
	if len(in.PodIPs) == 0 {
		return "", false, nil
	}
	for _, m := range in.Container.VolumeMounts {
		if m.MountPath == etcHosts {
			return "", false, nil
		}
	}
	var node []byte
	if in.Pod.Spec.HostNetwork {
		var err error
		if node, err = os.ReadFile(etcHosts); err != nil {
			return "", false, fmt.Errorf("%w: read the node's %s: %w", ErrConfig, etcHosts, err)
		}
	}
	p := PodDir(in.Node.RootDir, in.Pod) + "/etc-hosts"
	if err := h.MkdirAll(PodDir(in.Node.RootDir, in.Pod), 0o750); err != nil {
		return "", false, err
	}
	if err := h.WriteFile(p, HostsFile(in.Pod, in.PodIPs, in.Node.ClusterDomain, node), 0o644); err != nil {
		return "", false, fmt.Errorf("%w: hosts file: %w", ErrConfig, err)
	}
	return p, true, nil
}
