// Package cluster brings up and tears down a real single-node Kubernetes
// cluster on this host: etcd and the control plane, one node made of the chosen
// kubelet, runtime and proxy, CoreDNS, and a demo workload. Every process is
// detached (setsid) and recorded in state.json so that `down`, run by another
// process later, can stop it.
package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Choice selects our daemon or its upstream twin.
type Choice string

const (
	Ours     Choice = "ours"
	Upstream Choice = "upstream"
)

// ErrNotReady is wrapped when a component of ours was chosen before its owner
// marked it ready for the harness.
var ErrNotReady = errors.New("component not ready")

// ErrInvalidOption is wrapped by every bad option.
var ErrInvalidOption = errors.New("invalid option")

// Options choose the node's components and where everything lives.
type Options struct {
	Kubelet Choice
	Runtime Choice // Ours = our runtime-shim over containerd, Upstream = containerd's own CRI
	Proxy   Choice
	// RepoRoot is the checkout; our daemons are _output/bin/<name> and their
	// READY_FOR_HARNESS markers sit in <daemon>/.
	RepoRoot string
	// CacheDir is $NODESUITE_CACHE (binaries, CNI plugins, images).
	CacheDir string
	// ProxyMode overrides the proxy mode (default: iptables for kube-proxy,
	// nftables for ours; this kernel has no IPVS).
	ProxyMode string
	// RegistryCommand runs the image mirror: a program that takes
	// "serve-registry --addr ADDR ARCHIVE..." (the cluster CLI itself).
	RegistryCommand string
	// SkipDemo leaves out the demo workload.
	SkipDemo bool
}

// ParseRuntime reads the RUNTIME variable: ours or containerd.
func ParseRuntime(s string) (Choice, error) {
	switch s {
	case "ours":
		return Ours, nil
	case "containerd", "upstream":
		return Upstream, nil
	}
	return "", fmt.Errorf("%w: RUNTIME=%q: want ours or containerd", ErrInvalidOption, s)
}

// ParseChoice reads KUBELET/PROXY values.
func ParseChoice(name, s string) (Choice, error) {
	switch Choice(s) {
	case Ours, Upstream:
		return Choice(s), nil
	}
	return "", fmt.Errorf("%w: %s=%q: want ours or upstream", ErrInvalidOption, name, s)
}

// daemonOf names our daemon behind each switch and its upstream fallback.
var daemonOf = []struct{ variable, daemon, upstream string }{
	{"KUBELET", "kubelet", "KUBELET=upstream"},
	{"RUNTIME", "runtime-shim", "RUNTIME=containerd"},
	{"PROXY", "proxy", "PROXY=upstream"},
}

// CheckOurs decides whether each chosen daemon of ours may be used: its
// binary must exist in _output/bin and the file <daemon>/READY_FOR_HARNESS,
// which the lead creates once the daemon does its job, must exist. The
// check is deliberately a file: a daemon that starts but cannot yet run Pods
// would make `make up` fail in confusing ways far from the cause.
func (o Options) CheckOurs(stat func(string) error) error {
	if stat == nil {
		stat = func(p string) error { _, err := os.Stat(p); return err }
	}
	choices := []Choice{o.Kubelet, o.Runtime, o.Proxy}
	var errs []error
	for i, d := range daemonOf {
		if choices[i] != Ours {
			continue
		}
		marker := filepath.Join(o.RepoRoot, d.daemon, "READY_FOR_HARNESS")
		bin := filepath.Join(o.RepoRoot, "_output", "bin", d.daemon)
		if stat(marker) != nil {
			errs = append(errs, fmt.Errorf("%w: our %s is not ready yet (no %s); use %s", ErrNotReady, d.daemon, marker, d.upstream))
			continue
		}
		if stat(bin) != nil {
			errs = append(errs, fmt.Errorf("%w: our %s is not built (no %s); run make build or use %s", ErrNotReady, d.daemon, bin, d.upstream))
		}
	}
	return errors.Join(errs...)
}
