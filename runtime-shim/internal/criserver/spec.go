package criserver

import (
	"context"

	"fmt"
	"github.com/containerd/containerd/v2/core/containers"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/pkg/oci"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// specInput is everything container spec generation depends on, so that it
// is a pure function testable and fuzzable without containerd.
type specInput struct {
	ID          string
	Config      *runtime.ContainerConfig
	Sandbox     *runtime.PodSandboxConfig
	Image       imagespec.ImageConfig
	SandboxDir  string // holds hostname, hosts, resolv.conf
	SandboxShm  string // the Pod's shared /dev/shm, "" if it has none
	NetNSPath   string // "" for host network
	SandboxPID  uint32 // pause process, whose ipc/uts/pid namespaces containers join
	TargetPID   uint32 // for NamespaceMode_TARGET
	CgroupPath  string
	OOMMin      int64 // lowest oom_score_adj this process may set
	SeccompRoot string
	RRO         bool   // the runtime supports recursive read-only mounts
	Hostname    string // the Pod's hostname, else the node's: HOSTNAME in the environment
	ImageName   string // the image as the user named it (annotation)
}

// containerSpecOpts turns CRI + image config into containerd spec options.
// User/group resolution is left to the caller because it reads the rootfs.
func containerSpecOpts(in specInput) ([]oci.SpecOpts, error) {
	c := in.Config
	// As containerd's CRI: no /run tmpfs (the kubelet mounts what a Pod
	// needs), no default rlimits (the container inherits the runtime's, as
	// Pods do on containerd), and masked/readonly paths only as the request
	// lists them: the kubelet always sends its defaults, and a bare CRI
	// client gets what containerd gives it (containerd/containerd#5029).
	opts := []oci.SpecOpts{oci.WithoutRunMount, withoutRlimits, oci.WithMaskedPaths([]string{}), oci.WithReadonlyPaths([]string{})}

	args := append([]string{}, c.GetCommand()...)
	cargs := c.GetArgs()
	if len(args) == 0 {
		args = append(args, in.Image.Entrypoint...)
		if len(cargs) == 0 {
			cargs = in.Image.Cmd
		}
	}
	args = append(args, cargs...)
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: no command: neither the container config nor the image gives one", errInvalidSpec)
	}
	opts = append(opts, oci.WithProcessArgs(args...))

	cwd := c.GetWorkingDir()
	if cwd == "" {
		cwd = in.Image.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	opts = append(opts, oci.WithProcessCwd(cwd))

	// HOSTNAME first, so that the image's or the request's own wins.
	if in.Hostname != "" {
		opts = append(opts, oci.WithEnv([]string{"HOSTNAME=" + in.Hostname}))
	}
	env := append([]string{}, in.Image.Env...)
	for _, e := range c.GetEnvs() {
		env = append(env, e.GetKey()+"="+string(e.GetValue()))
	}
	opts = append(opts, oci.WithEnv(env))
	if c.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	opts = append(opts, withStdin(c.GetStdin()))

	// Namespaces: network from the sandbox netns, ipc/uts/pid from the pause process.
	sns := in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions()
	nsopt := c.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if sns.GetNetwork() == runtime.NamespaceMode_NODE || in.NetNSPath == "" {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.NetNSPath}))
	}
	if sns.GetIpc() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	} else if in.SandboxPID != 0 {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.IPCNamespace, Path: nsPath(in.SandboxPID, "ipc")}))
	}
	if sns.GetNetwork() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace))
	} else if in.SandboxPID != 0 {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.UTSNamespace, Path: nsPath(in.SandboxPID, "uts")}))
	}
	switch nsopt.GetPid() {
	case runtime.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	case runtime.NamespaceMode_POD:
		if in.SandboxPID != 0 {
			opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: nsPath(in.SandboxPID, "pid")}))
		}
	case runtime.NamespaceMode_TARGET:
		if in.TargetPID == 0 {
			return nil, fmt.Errorf("%w: target container %q is not running", errInvalidSpec, nsopt.GetTargetId())
		}
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: nsPath(in.TargetPID, "pid")}))
	}

	// Files the sandbox provides unless the kubelet mounts its own.
	opts = append(opts, withoutDefaultShm(in, c.GetMounts()), oci.WithMounts(cgroupMount(c.GetMounts())), oci.WithMounts(sandboxFileMounts(in, c.GetMounts())))
	mounts, err := criMounts(c.GetMounts(), in.RRO)
	if err != nil {
		return nil, err
	}
	opts = append(opts, oci.WithMounts(mounts), withRootfsPropagation(c.GetMounts()))

	sc := c.GetLinux().GetSecurityContext()
	if sc.GetPrivileged() {
		if !in.Sandbox.GetLinux().GetSecurityContext().GetPrivileged() {
			return nil, fmt.Errorf("%w: privileged container in a non-privileged sandbox", errInvalidSpec)
		}
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	} else {
		// The standard devices (null, zero, tty, ...) runc allows itself.
		if caps := sc.GetCapabilities(); caps != nil {
			if contains(caps.GetAddCapabilities(), "ALL") {
				// What we hold, not all known: this host's bounding set lacks some.
				opts = append(opts, oci.WithAllCurrentCapabilities)
			}
			if contains(caps.GetDropCapabilities(), "ALL") {
				opts = append(opts, oci.WithCapabilities(nil))
			}
			opts = append(opts, oci.WithAddedCapabilities(capNames(without(caps.GetAddCapabilities(), "ALL"))))
			opts = append(opts, oci.WithDroppedCapabilities(capNames(without(caps.GetDropCapabilities(), "ALL"))))
		}
		// The kubelet sends the default masked/readonly lists; nil means "runtime default".
		if sc.GetMaskedPaths() != nil {
			opts = append(opts, oci.WithMaskedPaths(sc.GetMaskedPaths()))
		}
		if sc.GetReadonlyPaths() != nil {
			opts = append(opts, oci.WithReadonlyPaths(sc.GetReadonlyPaths()))
		}
		sp, err := seccompOpt(sc, in.SeccompRoot)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sp)
	}
	for i, d := range c.GetDevices() {
		if d.GetHostPath() == "" {
			return nil, fmt.Errorf("%w: devices[%d]: empty host path", errInvalidSpec, i)
		}
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		opts = append(opts, oci.WithDevices(d.GetHostPath(), d.GetContainerPath(), perms))
	}
	// containerd's default spec sets no_new_privs; the CRI default is off.
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}

	if r := c.GetLinux().GetResources(); r != nil {
		opts = append(opts, resourceOpts(r, in.OOMMin)...)
	} else {
		opts = append(opts, withOOMScoreAdj(0, in.OOMMin))
	}
	if in.CgroupPath != "" {
		opts = append(opts, oci.WithCgroup(in.CgroupPath))
	}
	ann := map[string]string{}
	for k, v := range c.GetAnnotations() {
		ann[k] = v
	}
	// containerd's CRI annotations, which NRI plugins and node tools read.
	ann["io.kubernetes.cri.container-type"] = "container"
	ann["io.kubernetes.cri.container-name"] = c.GetMetadata().GetName()
	ann["io.kubernetes.cri.image-name"] = in.ImageName
	ann["io.kubernetes.cri.sandbox-name"] = in.Sandbox.GetMetadata().GetName()
	ann["io.kubernetes.cri.sandbox-namespace"] = in.Sandbox.GetMetadata().GetNamespace()
	ann["io.kubernetes.cri.sandbox-uid"] = in.Sandbox.GetMetadata().GetUid()
	opts = append(opts, oci.WithAnnotations(ann))
	return opts, nil
}

// withoutRlimits drops the default spec's RLIMIT_NOFILE 1024.
func withoutRlimits(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
	if s.Process != nil {
		s.Process.Rlimits = nil
	}
	return nil
}

// cgroupMount is containerd's read-only /sys/fs/cgroup (the container's
// own cgroups, which runtimes such as the JVM read for their limits),
// unless the request mounts something there.
func cgroupMount(user []*runtime.Mount) []specs.Mount {
	for _, m := range user {
		if filepath.Clean(m.GetContainerPath()) == "/sys/fs/cgroup" {
			return nil
		}
	}
	return []specs.Mount{{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup",
		Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}}}
}

func resourceOpts(r *runtime.LinuxContainerResources, oomMin int64) []oci.SpecOpts {
	var opts []oci.SpecOpts
	if r.GetCpuShares() > 0 {
		opts = append(opts, oci.WithCPUShares(uint64(r.GetCpuShares())))
	}
	if r.GetCpuQuota() != 0 || r.GetCpuPeriod() != 0 {
		opts = append(opts, oci.WithCPUCFS(r.GetCpuQuota(), uint64(r.GetCpuPeriod())))
	}
	if r.GetMemoryLimitInBytes() > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(r.GetMemoryLimitInBytes())))
	}
	if r.GetCpusetCpus() != "" {
		opts = append(opts, oci.WithCPUs(r.GetCpusetCpus()))
	}
	if r.GetCpusetMems() != "" {
		opts = append(opts, oci.WithCPUsMems(r.GetCpusetMems()))
	}
	return append(opts, withOOMScoreAdj(r.GetOomScoreAdj(), oomMin))
}

// withOOMScoreAdj clamps to what this process may set: without
// CAP_SYS_RESOURCE runc cannot go below our own value (ENVIRONMENT.md).
func withOOMScoreAdj(v, min int64) oci.SpecOpts {
	if v < min {
		v = min
	}
	if v > 1000 {
		v = 1000
	}
	a := int(v)
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.OOMScoreAdj = &a
		return nil
	}
}

func withStdin(open bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		// runc itself has no stdin switch; this records intent for attach.
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		if open {
			s.Annotations["io.nodesuite.cri.stdin"] = "true"
		}
		return nil
	}
}

func seccompOpt(sc *runtime.LinuxContainerSecurityContext, root string) (oci.SpecOpts, error) {
	p := sc.GetSeccomp()
	if p == nil {
		return oci.WithSeccompUnconfined, nil // the CRI's "no profile" is unconfined
	}
	switch p.GetProfileType() {
	case runtime.SecurityProfile_Unconfined:
		return oci.WithSeccompUnconfined, nil
	case runtime.SecurityProfile_RuntimeDefault:
		return seccomp.WithDefaultProfile(), nil
	case runtime.SecurityProfile_Localhost:
		ref := p.GetLocalhostRef()
		if !filepath.IsAbs(ref) {
			ref = filepath.Join(root, ref)
		}
		return seccomp.WithProfile(ref), nil
	}
	return nil, fmt.Errorf("%w: seccomp profile type %d", errInvalidSpec, p.GetProfileType())
}

func criMounts(ms []*runtime.Mount, rro bool) ([]specs.Mount, error) {
	var out []specs.Mount
	for i, m := range ms {
		if m.GetImage().GetImage() != "" && m.GetHostPath() == "" {
			// Image volumes are mounted by resolveImageVolumes, which fills in the host path.
			return nil, fmt.Errorf("%w: mounts[%d]", errImageVolume, i)
		}
		o := []string{"rbind"}
		switch m.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_PRIVATE:
			o = append(o, "rprivate")
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			o = append(o, "rslave")
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			o = append(o, "rshared")
		}
		// Recursive read-only, as containerd's CRI: only read-only and
		// private, and only where runc and the kernel can do it.
		switch {
		case m.GetRecursiveReadOnly() && !m.GetReadonly():
			return nil, fmt.Errorf("%w: mounts[%d]: recursive read-only mount of %q conflicts with a read-write mount", errInvalidSpec, i, m.GetHostPath())
		case m.GetRecursiveReadOnly() && !rro:
			return nil, fmt.Errorf("%w: mounts[%d]: the runtime does not support recursive read-only mounts (%q)", errInvalidSpec, i, m.GetHostPath())
		case m.GetRecursiveReadOnly() && m.GetPropagation() != runtime.MountPropagation_PROPAGATION_PRIVATE:
			return nil, fmt.Errorf("%w: mounts[%d]: recursive read-only mount of %q needs private propagation, got %s", errInvalidSpec, i, m.GetHostPath(), m.GetPropagation())
		case m.GetRecursiveReadOnly():
			o = append(o, "rro")
		case m.GetReadonly():
			o = append(o, "ro")
		default:
			o = append(o, "rw")
		}
		out = append(out, specs.Mount{Destination: m.GetContainerPath(), Source: m.GetHostPath(), Type: "bind", Options: o})
	}
	return out, nil
}

func sandboxFileMounts(in specInput, user []*runtime.Mount) []specs.Mount {
	if in.SandboxDir == "" {
		return nil
	}
	taken := map[string]bool{}
	for _, m := range user {
		taken[filepath.Clean(m.GetContainerPath())] = true
	}
	hostNet := in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
	ro := in.Config.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	var out []specs.Mount
	files := []string{"hostname", "resolv.conf", "hosts"}
	if hostNet {
		files = []string{"hostname"}
	}
	for _, f := range files {
		dst := "/etc/" + f
		if taken[dst] {
			continue
		}
		o := []string{"rbind", "rprivate", "rw"}
		if ro {
			o[2] = "ro"
		}
		out = append(out, specs.Mount{Destination: dst, Source: filepath.Join(in.SandboxDir, f), Type: "bind", Options: o})
	}
	// /dev/shm: the host's with the host IPC namespace, else the Pod's
	// shared one, writable even with a read-only rootfs (as containerd).
	shm := in.SandboxShm
	if in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE {
		shm = devShm
	}
	if shm != "" && !taken[devShm] {
		out = append(out, specs.Mount{Destination: devShm, Source: shm, Type: "bind", Options: []string{"rbind", "rprivate", "rw"}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}

const devShm = "/dev/shm"

// withoutDefaultShm drops the default spec's private /dev/shm tmpfs when
// the sandbox or the kubelet provides /dev/shm, so only one is mounted.
func withoutDefaultShm(in specInput, user []*runtime.Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		hostIPC := in.Sandbox.GetLinux().GetSecurityContext().GetNamespaceOptions().GetIpc() == runtime.NamespaceMode_NODE
		provided := in.SandboxDir != "" && (in.SandboxShm != "" || hostIPC) // see sandboxFileMounts
		for _, m := range user {
			provided = provided || filepath.Clean(m.GetContainerPath()) == devShm
		}
		if !provided {
			return nil
		}
		kept := s.Mounts[:0]
		for _, m := range s.Mounts {
			if filepath.Clean(m.Destination) != devShm {
				kept = append(kept, m)
			}
		}
		s.Mounts = kept
		return nil
	}
}

func nsPath(pid uint32, ns string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, ns) }

func contains(l []string, v string) bool {
	for _, x := range l {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

func without(l []string, v string) []string {
	var out []string
	for _, x := range l {
		if !strings.EqualFold(x, v) {
			out = append(out, x)
		}
	}
	return out
}

// capNames accepts both "NET_ADMIN" (the kubelet's form) and "CAP_NET_ADMIN".
func capNames(l []string) []string {
	out := make([]string, 0, len(l))
	for _, c := range l {
		c = strings.ToUpper(c)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

// withRootfsPropagation makes the container's root shared (or slave) when a
// mount asks for bidirectional (or host-to-container) propagation; without it
// runc's private root would cut the propagation off, as containerd's CRI knows.
func withRootfsPropagation(ms []*runtime.Mount) oci.SpecOpts {
	mode := ""
	for _, m := range ms {
		switch m.GetPropagation() {
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			mode = "rshared"
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if mode == "" {
				mode = "rslave"
			}
		}
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if mode != "" {
			s.Linux.RootfsPropagation = mode
		}
		return nil
	}
}
