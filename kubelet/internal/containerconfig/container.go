package containerconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// Host prepares files on the host that containers mount; an interface so unit
// tests need no root.
type Host interface {
	MkdirAll(path string, perm os.FileMode) error
	WriteFile(path string, data []byte, perm os.FileMode) error
}

// OSHost is the real filesystem.
type OSHost struct{}

// MkdirAll creates path and its parents.
func (OSHost) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }

// WriteFile writes data to path.
func (OSHost) WriteFile(path string, data []byte, perm os.FileMode) error {
	return os.WriteFile(path, data, perm)
}

// HostVolume is a prepared volume as containers mount it.
type HostVolume struct {
	Path string
	// ReadOnly is forced for volumes the kubelet writes (configMap, secret,
	// downwardAPI, projected), as upstream mounts them.
	ReadOnly bool
}

// ContainerInput is what one container's CRI config is built from.
type ContainerInput struct {
	Pod          *v1.Pod
	Container    *v1.Container
	RestartCount int
	Env          []EnvVar
	ImageRef     string
	ImageUser    ImageUser             // the image's user, from its ImageStatus
	Volumes      map[string]HostVolume // by volume name
	PodIPs       []string              // for the managed /etc/hosts; none yet means no hosts file
	Node         Node
	// UserNamespace is the Pod's, as its sandbox was given it.
	UserNamespace *runtimeapi.UserNamespace
}

// ContainerConfig builds the CRI ContainerConfig and prepares the host files
// it mounts (the termination message file).
func ContainerConfig(h Host, in ContainerInput) (*runtimeapi.ContainerConfig, error) {
	pod, c := in.Pod, in.Container
	lookup := func(n string) (string, bool) {
		for _, e := range in.Env {
			if e.Name == n {
				return e.Value, true
			}
		}
		return "", false
	}
	cfg := &runtimeapi.ContainerConfig{
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: uint32(in.RestartCount)},
		Image:       &runtimeapi.ImageSpec{Image: in.ImageRef, UserSpecifiedImage: c.Image},
		WorkingDir:  c.WorkingDir,
		Labels:      runtime.ContainerLabels(pod, c),
		Annotations: runtime.ContainerAnnotations(pod, c, in.RestartCount),
		LogPath:     runtime.ContainerLogPath(c.Name, in.RestartCount),
		Stdin:       c.Stdin,
		StdinOnce:   c.StdinOnce,
		Tty:         c.TTY,
	}
	for _, s := range c.Command {
		cfg.Command = append(cfg.Command, Expand(s, lookup))
	}
	for _, s := range c.Args {
		cfg.Args = append(cfg.Args, Expand(s, lookup))
	}
	for _, e := range in.Env {
		cfg.Envs = append(cfg.Envs, &runtimeapi.KeyValue{Key: e.Name, Value: []byte(e.Value)})
	}
	for _, m := range c.VolumeMounts {
		hv, ok := in.Volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("%w: volumeMount %s: no volume %q prepared", ErrConfig, m.MountPath, m.Name)
		}
		hp := hv.Path
		if sp := subPath(m, lookup); sp != "" {
			if !filepath.IsLocal(sp) {
				return nil, fmt.Errorf("%w: subPath %q must be a relative path inside the volume", ErrConfig, sp)
			}
			hp = filepath.Join(hp, sp)
			// A missing subPath becomes a directory, as upstream; an existing file stays one.
			if _, err := os.Lstat(hp); err != nil {
				if err := h.MkdirAll(hp, 0o777); err != nil {
					return nil, fmt.Errorf("%w: subPath %s: %w", ErrConfig, sp, err)
				}
			}
		}
		cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: m.MountPath, HostPath: hp, Readonly: m.ReadOnly || hv.ReadOnly,
			Propagation: propagation(m.MountPropagation)})
	}
	if hp, ok, err := hostsMount(h, in); err != nil {
		return nil, err
	} else if ok {
		cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: etcHosts, HostPath: hp})
	}
	if c.TerminationMessagePath != "" {
		dir := filepath.Join(PodDir(in.Node.RootDir, pod), "containers", c.Name)
		if err := h.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("termination message dir: %w", err)
		}
		// One file per attempt, so a restart starts with an empty message.
		f := filepath.Join(dir, "termination-log-"+strconv.Itoa(in.RestartCount))
		if err := h.WriteFile(f, nil, 0o666); err != nil {
			return nil, fmt.Errorf("termination message file: %w", err)
		}
		cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: c.TerminationMessagePath, HostPath: f})
	}
	sc, err := securityContext(pod, c, in.ImageUser, in.Node, in.UserNamespace)
	if err != nil {
		return nil, err
	}
	// Every mount is ID-mapped into the Pod's user namespace, as upstream
	// does, so its files show their owners inside rather than nobody; the
	// node's namespace has no mappings, leaving the mounts as they are.
	if u := in.UserNamespace; u != nil {
		for _, m := range cfg.Mounts {
			m.UidMappings, m.GidMappings = u.Uids, u.Gids
		}
	}
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: resources(pod, c, in.Node.MemoryBytes), SecurityContext: sc}
	return cfg, nil
}

// subPath is the mount's subPath, or subPathExpr expanded with the env.
func subPath(m v1.VolumeMount, lookup func(string) (string, bool)) string {
	if m.SubPathExpr != "" {
		return Expand(m.SubPathExpr, lookup)
	}
	return m.SubPath
}

func propagation(p *v1.MountPropagationMode) runtimeapi.MountPropagation {
	if p == nil {
		return runtimeapi.MountPropagation_PROPAGATION_PRIVATE
	}
	switch *p {
	case v1.MountPropagationHostToContainer:
		return runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER
	case v1.MountPropagationBidirectional:
		return runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	}
	return runtimeapi.MountPropagation_PROPAGATION_PRIVATE
}

const (
	cpuPeriod    = 100000
	minShares    = 2
	minQuota     = 1000
	sharesPerCPU = 1024
)

// resources is upstream's generateLinuxContainerResources for cgroup v1.
func resources(pod *v1.Pod, c *v1.Container, nodeMem int64) *runtimeapi.LinuxContainerResources {
	r := &runtimeapi.LinuxContainerResources{}
	cpuReq := c.Resources.Requests.Cpu().MilliValue()
	cpuLim, hasCPULim := c.Resources.Limits[v1.ResourceCPU]
	if cpuReq == 0 && hasCPULim {
		cpuReq = cpuLim.MilliValue()
	}
	shares := cpuReq * sharesPerCPU / 1000
	if shares < minShares {
		shares = minShares
	}
	r.CpuShares = shares
	if hasCPULim {
		q := cpuLim.MilliValue() * cpuPeriod / 1000
		if q < minQuota {
			q = minQuota
		}
		r.CpuQuota, r.CpuPeriod = q, cpuPeriod
	}
	if ml, ok := c.Resources.Limits[v1.ResourceMemory]; ok {
		r.MemoryLimitInBytes = ml.Value()
	}
	r.OomScoreAdj = oomScoreAdj(pod, c, nodeMem)
	return r
}

// oomScoreAdj follows upstream's qos policy; runtimes clamp it where the
// host cannot lower it (this machine lacks CAP_SYS_RESOURCE).
func oomScoreAdj(pod *v1.Pod, c *v1.Container, nodeMem int64) int64 {
	switch QOS(pod) {
	case v1.PodQOSGuaranteed:
		return -997
	case v1.PodQOSBestEffort:
		return 1000
	}
	if nodeMem <= 0 {
		return 999
	}
	adj := 1000 - (1000*c.Resources.Requests.Memory().Value())/nodeMem
	if adj < 1000+(-997) { // never as low as Guaranteed
		adj = 3
	}
	if adj >= 1000 {
		adj = 999
	}
	return adj
}
