package criserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandboxFiles renders /etc/hostname, /etc/hosts and /etc/resolv.conf for a Pod.
func sandboxFiles(cfg *runtime.PodSandboxConfig, hostResolv []byte) (map[string][]byte, error) {
	hostNet := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
	hostname := cfg.GetHostname()
	if hostname == "" || hostNet {
		h, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		if hostname == "" {
			hostname = h
		}
	}
	files := map[string][]byte{"hostname": []byte(hostname + "\n")}
	files["hosts"] = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if d := cfg.GetDnsConfig(); d != nil && (len(d.GetServers()) > 0 || len(d.GetSearches()) > 0 || len(d.GetOptions()) > 0) {
		var b strings.Builder
		if len(d.GetSearches()) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(d.GetSearches(), " "))
		}
		for _, s := range d.GetServers() {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if len(d.GetOptions()) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(d.GetOptions(), " "))
		}
		files["resolv.conf"] = []byte(b.String())
	} else {
		files["resolv.conf"] = hostResolv
	}
	return files, nil
}

func writeSandboxFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
