package cluster

import (
	"path/filepath"

	"github.com/nodesuite/nodesuite/e2e/harness/runtime"
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

// ContainerdParams places the cluster's containerd: every path private to
// the cluster (root under the checkout, state and sockets under RunDir, so
// socket paths stay short), NRI off. With cri false, containerd's CRI
// plugins are disabled because our runtime-shim serves the CRI socket. The
// config itself is the one the private runtime stacks use.
func ContainerdParams(l Layout, p RuntimePaths, cri bool) runtime.ContainerdParams {
	return runtime.ContainerdParams{
		Paths: runtime.ContainerdPaths{
			Root: l.RuntimeRoot(), State: l.ContainerdStateDir(), Socket: l.ContainerdSocket(),
			ShimSocketDir: l.ShimSocketDir(), Opt: filepath.Join(l.RuntimeRoot(), "opt"), RuncRoot: l.RuncRoot(),
			RegistryConfigDir: p.RegistryHostsDir, CNIConfDir: l.CNIConfDir(),
		},
		CRI: cri, RuncBinary: p.Runc, CNIBinDir: p.CNIBinDir, SandboxImage: PauseImage,
	}
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
