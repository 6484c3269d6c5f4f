package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
)

// RuntimePaths are the binaries and dirs the runtime stack needs.
type RuntimePaths struct {
	Containerd string
	Runc       string
	CNIBinDir  string
	// RegistryHostsDir holds containerd hosts.toml files mirroring the
	// upstream registries to the local one.
	RegistryHostsDir string
}

func (l Layout) ContainerdSocket() string   { return filepath.Join(l.RunDir, "containerd.sock") }
func (l Layout) ContainerdConfig() string   { return filepath.Join(l.Dir, "config", "containerd.toml") }
func (l Layout) RuncRoot() string           { return filepath.Join(l.RunDir, "runc") }
func (l Layout) ShimSocketDir() string      { return filepath.Join(l.RunDir, "s") }
func (l Layout) RegistryHostsDir() string   { return filepath.Join(l.Dir, "config", "registry-hosts") }
func (l Layout) RuntimeShimRoot() string    { return filepath.Join(l.Dir, "runtime", "shim-root") }
func (l Layout) RuntimeShimState() string   { return filepath.Join(l.RunDir, "shim-state") }
func (l Layout) ContainerdStateDir() string { return filepath.Join(l.RunDir, "containerd") }

// ContainerdConfig renders a containerd v2 config whose every path is
// private to the cluster: root, state, sockets, shim sockets, runc root,
// netns mounts (under the state dir), NRI off. With cri false, containerd's
// CRI plugin is disabled because our runtime-shim serves the CRI socket.
func ContainerdConfig(l Layout, p RuntimePaths, cri bool) string {
	var b strings.Builder
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	fmt.Fprintf(&b, "version = 3\nroot = %s\nstate = %s\n", q(l.RuntimeRoot()), q(l.ContainerdStateDir()))
	disabled := []string{`"io.containerd.nri.v1.nri"`}
	if !cri {
		disabled = append(disabled, `"io.containerd.grpc.v1.cri"`)
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(disabled, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n[ttrpc]\n  address = %s\n\n[debug]\n  address = \"\"\n\n[metrics]\n  address = \"\"\n\n",
		q(l.ContainerdSocket()), q(l.ContainerdSocket()+".ttrpc"))
	fmt.Fprintf(&b, "[plugins]\n")
	fmt.Fprintf(&b, "  [plugins.'io.containerd.internal.v1.opt']\n    path = %s\n", q(filepath.Join(l.RuntimeRoot(), "opt")))
	fmt.Fprintf(&b, "  [plugins.'io.containerd.shim.v1.manager']\n    socket_dir = %s\n", q(l.ShimSocketDir()))
	fmt.Fprintf(&b, "  [plugins.'io.containerd.cri.v1.images']\n    snapshotter = 'overlayfs'\n")
	fmt.Fprintf(&b, "    [plugins.'io.containerd.cri.v1.images'.pinned_images]\n      sandbox = %s\n", q(PauseImage))
	fmt.Fprintf(&b, "    [plugins.'io.containerd.cri.v1.images'.registry]\n      config_path = %s\n", q(p.RegistryHostsDir))
	fmt.Fprintf(&b, "  [plugins.'io.containerd.cri.v1.runtime']\n    restrict_oom_score_adj = true\n    netns_mounts_under_state_dir = true\n    enable_selinux = false\n    cdi_spec_dirs = []\n")
	fmt.Fprintf(&b, "    [plugins.'io.containerd.cri.v1.runtime'.containerd]\n      default_runtime_name = 'runc'\n")
	fmt.Fprintf(&b, "      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\n        runtime_type = 'io.containerd.runc.v2'\n")
	fmt.Fprintf(&b, "        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n          BinaryName = %s\n          Root = %s\n          SystemdCgroup = false\n",
		q(p.Runc), q(l.RuncRoot()))
	fmt.Fprintf(&b, "    [plugins.'io.containerd.cri.v1.runtime'.cni]\n      bin_dirs = [%s]\n      conf_dir = %s\n      max_conf_num = 1\n",
		q(p.CNIBinDir), q(l.CNIConfDir()))
	fmt.Fprintf(&b, "  [plugins.'io.containerd.grpc.v1.cri']\n    disable_tcp_service = true\n    stream_server_address = '127.0.0.1'\n    stream_server_port = '0'\n")
	return b.String()
}

// HostsToml points one upstream registry at the local mirror. Plain http
// and no skip_verify: with skip_verify containerd tries HTTPS first.
func HostsToml(upstream, mirror string) string {
	return fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "https://"+upstream, mirror)
}

// ContainerdProcess starts containerd with the config above.
func ContainerdProcess(bin string, l Layout) Process {
	return Process{Name: "containerd", Path: bin, Args: []string{kv("config", l.ContainerdConfig())}}
}

// RuntimeShimProcess starts our runtime-shim with the flags of the team
// contract, on the CRI socket, over the private containerd.
func RuntimeShimProcess(bin string, l Layout, p RuntimePaths) Process {
	return Process{
		Name: "runtime-shim", Path: bin,
		Args: []string{
			kv("socket", l.CRISocket()),
			kv("containerd-address", l.ContainerdSocket()),
			kv("containerd-namespace", "k8s.io"),
			kv("sandbox-image", PauseImage),
			kv("cni-conf-dir", l.CNIConfDir()),
			kv("cni-bin-dir", p.CNIBinDir),
			kv("registry-config-dir", p.RegistryHostsDir),
			kv("root-dir", l.RuntimeShimRoot()),
			kv("state-dir", l.RuntimeShimState()),
			kv("streaming-address", "127.0.0.1:0"),
			kv("cgroup-driver", "cgroupfs"),
			kv("ops-bind-address", ShimOpsAddr),
		},
		Health: "http://" + ShimOpsAddr + "/readyz",
	}
}
