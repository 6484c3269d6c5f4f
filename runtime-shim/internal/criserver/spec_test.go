package criserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// specSummary is the part of a generated spec the CRI config decides.
type specSummary struct {
	Args        []string
	Env         []string
	Cwd         string
	OOM         int
	Namespaces  []specs.LinuxNamespace
	Mounts      []specs.Mount // non-default mounts only
	ShmSources  []string      // every mount at /dev/shm, in order
	NoNewPrivs  bool
	ReadonlyFS  bool
	Seccomp     bool
	CapsAdded   bool
	Cgroup      string
	MemoryLimit int64
}

func generate(t testing.TB, in specInput) (*specSummary, error) {
	t.Helper()
	opts, err := containerSpecOpts(in)
	if err != nil {
		return nil, err
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: in.ID}, opts...)
	if err != nil {
		return nil, err
	}
	sum := &specSummary{Args: s.Process.Args, Env: s.Process.Env, Cwd: s.Process.Cwd, Namespaces: s.Linux.Namespaces,
		NoNewPrivs: s.Process.NoNewPrivileges, ReadonlyFS: s.Root.Readonly, Seccomp: s.Linux.Seccomp != nil, Cgroup: s.Linux.CgroupsPath}
	if s.Process.OOMScoreAdj != nil {
		sum.OOM = *s.Process.OOMScoreAdj
	}
	if s.Process.Capabilities != nil {
		for _, c := range s.Process.Capabilities.Bounding {
			if c == "CAP_NET_ADMIN" {
				sum.CapsAdded = true
			}
		}
	}
	if s.Linux.Resources != nil && s.Linux.Resources.Memory != nil && s.Linux.Resources.Memory.Limit != nil {
		sum.MemoryLimit = *s.Linux.Resources.Memory.Limit
	}
	for _, m := range s.Mounts {
		if m.Type == "bind" {
			sum.Mounts = append(sum.Mounts, m)
		}
		if m.Destination == "/dev/shm" {
			sum.ShmSources = append(sum.ShmSources, m.Source)
		}
	}
	return sum, nil
}

func baseInput() specInput {
	return specInput{
		ID:         "c1",
		Config:     &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "img"}},
		Sandbox:    &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}},
		Image:      imagespec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"dflt"}, Env: []string{"PATH=/bin"}, WorkingDir: "/w"},
		SandboxDir: "/sb", NetNSPath: "/run/netns/x", SandboxPID: 42, CgroupPath: "/kubepods/pod1/c1",
	}
}

func TestContainerSpec(t *testing.T) {
	defaultNS := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"},
		{Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/42/ns/uts"},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace, Path: "/run/netns/x"},
	}
	sbMounts := []specs.Mount{
		{Destination: "/etc/hostname", Type: "bind", Source: "/sb/hostname", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/hosts", Type: "bind", Source: "/sb/hosts", Options: []string{"rbind", "rprivate", "rw"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: "/sb/resolv.conf", Options: []string{"rbind", "rprivate", "rw"}},
	}
	for _, tc := range []struct {
		name   string
		mutate func(*specInput)
		want   *specSummary
		err    error
	}{
		{
			name: "image defaults, oom clamped to ours",
			mutate: func(in *specInput) {
				in.OOMMin = 0
				in.Config.Linux = &runtime.LinuxContainerConfig{Resources: &runtime.LinuxContainerResources{OomScoreAdj: -997, MemoryLimitInBytes: 1 << 20}}
			},
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w", OOM: 0, Namespaces: defaultNS,
				Mounts: sbMounts, Seccomp: false, Cgroup: "/kubepods/pod1/c1", MemoryLimit: 1 << 20, ShmSources: []string{"shm"}},
		},
		{
			name: "command, args, env, workdir and security from CRI",
			mutate: func(in *specInput) {
				c := in.Config
				c.Command, c.Args, c.WorkingDir = []string{"/bin/sh"}, []string{"-c", "true"}, "/tmp"
				c.Envs = []*runtime.KeyValue{{Key: "A", Value: []byte("b")}}
				c.Mounts = []*runtime.Mount{{ContainerPath: "/etc/hosts", HostPath: "/h", Readonly: true, Propagation: runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
				c.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					NoNewPrivs: true, ReadonlyRootfs: true,
					Capabilities:     &runtime.Capability{AddCapabilities: []string{"NET_ADMIN"}},
					Seccomp:          &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_Unconfined},
					NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER},
				}}
			},
			want: &specSummary{Args: []string{"/bin/sh", "-c", "true"}, Env: []string{"PATH=/bin", "A=b"}, Cwd: "/tmp",
				Namespaces: append([]specs.LinuxNamespace{{Type: specs.PIDNamespace}}, defaultNS[1:]...),
				Mounts: []specs.Mount{
					{Destination: "/etc/hostname", Type: "bind", Source: "/sb/hostname", Options: []string{"rbind", "rprivate", "ro"}},
					{Destination: "/etc/resolv.conf", Type: "bind", Source: "/sb/resolv.conf", Options: []string{"rbind", "rprivate", "ro"}},
					{Destination: "/etc/hosts", Type: "bind", Source: "/h", Options: []string{"rbind", "rslave", "ro"}},
				},
				NoNewPrivs: true, ReadonlyFS: true, CapsAdded: true, Cgroup: "/kubepods/pod1/c1", ShmSources: []string{"shm"}},
		},
		{
			name: "host network",
			mutate: func(in *specInput) {
				in.NetNSPath = ""
				in.Sandbox.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}
			},
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w",
				Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}, {Type: specs.IPCNamespace, Path: "/proc/42/ns/ipc"}, {Type: specs.MountNamespace}},
				Mounts: []specs.Mount{
					{Destination: "/etc/hosts", Type: "bind", Source: "/etc/hosts", Options: []string{"rbind", "ro"}},
					{Destination: "/etc/resolv.conf", Type: "bind", Source: "/etc/resolv.conf", Options: []string{"rbind", "ro"}},
					{Destination: "/etc/hostname", Type: "bind", Source: "/sb/hostname", Options: []string{"rbind", "rprivate", "rw"}},
				},
				Cgroup: "/kubepods/pod1/c1", ShmSources: []string{"shm"}},
		},
		{
			name: "RuntimeDefault seccomp",
			mutate: func(in *specInput) {
				in.Config.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault}}}
			},
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w", Namespaces: defaultNS,
				Mounts: sbMounts, Seccomp: true, Cgroup: "/kubepods/pod1/c1", ShmSources: []string{"shm"}},
		},
		{
			name:   "the Pod's shared /dev/shm replaces the private one",
			mutate: func(in *specInput) { in.SandboxShm = "/sb/shm" },
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w", Namespaces: defaultNS,
				Mounts:     append([]specs.Mount{{Destination: "/dev/shm", Type: "bind", Source: "/sb/shm", Options: []string{"rbind", "rprivate", "rw"}}}, sbMounts...),
				ShmSources: []string{"/sb/shm"}, Cgroup: "/kubepods/pod1/c1"},
		},
		{
			name: "host IPC uses the host's /dev/shm",
			mutate: func(in *specInput) {
				in.SandboxShm = ""
				in.Sandbox.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Ipc: runtime.NamespaceMode_NODE}}}
			},
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w",
				Namespaces: []specs.LinuxNamespace{defaultNS[0], defaultNS[2], defaultNS[3], defaultNS[4]},
				Mounts:     append([]specs.Mount{{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate", "rw"}}}, sbMounts...),
				ShmSources: []string{"/dev/shm"}, Cgroup: "/kubepods/pod1/c1"},
		},
		{
			name: "the kubelet's /dev/shm mount wins over the Pod's",
			mutate: func(in *specInput) {
				in.SandboxShm = "/sb/shm"
				in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/dev/shm", HostPath: "/em"}}
			},
			want: &specSummary{Args: []string{"/ep", "dflt"}, Env: []string{"PATH=/bin"}, Cwd: "/w", Namespaces: defaultNS,
				Mounts:     append(append([]specs.Mount{}, sbMounts...), specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/em", Options: []string{"rbind", "rprivate", "rw"}}),
				ShmSources: []string{"/em"}, Cgroup: "/kubepods/pod1/c1"},
		},
		{
			name:   "no command anywhere",
			mutate: func(in *specInput) { in.Image = imagespec.ImageConfig{} },
			err:    errInvalidSpec,
		},
		{
			name: "privileged container in unprivileged pod",
			mutate: func(in *specInput) {
				in.Config.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{Privileged: true}}
			},
			err: errInvalidSpec,
		},
		{
			name: "image volume unsupported",
			mutate: func(in *specInput) {
				in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/v", Image: &runtime.ImageSpec{Image: "x"}}}
			},
			err: errImageVolume,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			tc.mutate(&in)
			got, err := generate(t, in)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestResolveID(t *testing.T) {
	ids := []string{"abc123", "abd456", "ffff"}
	for _, tc := range []struct{ in, want string }{{"abc123", "abc123"}, {"abc", "abc123"}, {"ff", "ffff"}, {"ab", ""}, {"zz", ""}} {
		got, err := resolveID(ids, tc.in, "container")
		if (err == nil) != (tc.want != "") || got != tc.want {
			t.Errorf("resolveID(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSandboxFiles(t *testing.T) {
	cfg := &runtime.PodSandboxConfig{Hostname: "web-0", DnsConfig: &runtime.DNSConfig{
		Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"}, Options: []string{"ndots:5"}}}
	got, err := sandboxFiles(cfg, []byte("nameserver 192.0.2.1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"hostname":    "web-0\n",
		"hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"resolv.conf": "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
	}
	gs := map[string]string{}
	for k, v := range got {
		gs[k] = string(v)
	}
	if d := cmp.Diff(want, gs); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// TestContainerSpecContainerdDefaults: what containerd's CRI adds to or
// leaves out of a container's spec beyond the request, which Pods notice
// when a node moves between the two runtimes.
func TestContainerSpecContainerdDefaults(t *testing.T) {
	type defaults struct {
		Env         []string
		Masked      []string
		Readonly    []string
		Rlimits     int
		NonBind     map[string]string // destination -> type, beyond the default spec's
		Annotations map[string]string
	}
	summarize := func(in specInput) defaults {
		t.Helper()
		opts, err := containerSpecOpts(in)
		if err != nil {
			t.Fatal(err)
		}
		ctx := namespaces.WithNamespace(context.Background(), "test")
		s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: in.ID}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		d := defaults{Env: s.Process.Env, Masked: s.Linux.MaskedPaths, Readonly: s.Linux.ReadonlyPaths,
			Rlimits: len(s.Process.Rlimits), NonBind: map[string]string{}, Annotations: s.Annotations}
		for _, m := range s.Mounts {
			switch m.Destination {
			case "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys":
			default:
				if m.Type != "bind" {
					d.NonBind[m.Destination] = m.Type + " " + strings.Join(m.Options, ",")
				}
			}
		}
		return d
	}
	ann := map[string]string{
		"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.container-name": "c",
		"io.kubernetes.cri.image-name": "img:1", "io.kubernetes.cri.sandbox-name": "p",
		"io.kubernetes.cri.sandbox-namespace": "n", "io.kubernetes.cri.sandbox-uid": "u",
	}
	cgroupRO := map[string]string{"/sys/fs/cgroup": "cgroup nosuid,noexec,nodev,relatime,ro"}
	for _, tc := range []struct {
		name   string
		mutate func(*specInput)
		want   defaults
	}{
		{
			name: "bare request: no masked paths, no /run, no rlimits, HOSTNAME, read-only cgroupfs",
			want: defaults{Env: []string{"HOSTNAME=web-0", "PATH=/bin"}, NonBind: cgroupRO, Annotations: ann},
		},
		{
			name: "the kubelet's masked and read-only paths and its HOSTNAME win",
			mutate: func(in *specInput) {
				in.Config.Envs = []*runtime.KeyValue{{Key: "HOSTNAME", Value: []byte("mine")}}
				in.Config.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{
					MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"}}}
			},
			want: defaults{Env: []string{"HOSTNAME=mine", "PATH=/bin"}, Masked: []string{"/proc/kcore"}, Readonly: []string{"/proc/sys"},
				NonBind: cgroupRO, Annotations: ann},
		},
		{
			name: "a mount at /sys/fs/cgroup replaces the cgroupfs",
			mutate: func(in *specInput) {
				in.Config.Mounts = []*runtime.Mount{{ContainerPath: "/sys/fs/cgroup/", HostPath: "/sys/fs/cgroup"}}
			},
			want: defaults{Env: []string{"HOSTNAME=web-0", "PATH=/bin"}, NonBind: map[string]string{}, Annotations: ann},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			in.Hostname, in.ImageName = "web-0", "img:1"
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			if d := cmp.Diff(tc.want, summarize(in), cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestSandboxSpec: the pause container's spec adds what containerd's CRI
// adds: read-only rootfs, the image's user, the unprivileged port and ping
// sysctls in the Pod's own network namespace, the smallest CPU weight,
// no /run and no rlimits.
func TestSandboxSpec(t *testing.T) {
	type summary struct {
		Args     []string
		User     string
		Readonly bool
		Sysctls  map[string]string
		Shares   uint64
		Rlimits  int
		RunMount bool
		ImageAnn string
	}
	base := func() sandboxSpecInput {
		return sandboxSpecInput{
			Config:    &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}},
			Image:     imagespec.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
			ImageName: "pause:3", NetNSPath: "/ns", UnprivilegedPorts: true,
		}
	}
	defaults := map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
	for _, tc := range []struct {
		name   string
		mutate func(*sandboxSpecInput)
		want   summary
	}{
		{name: "defaults", want: summary{Args: []string{"/pause"}, User: "65535:65535", Readonly: true, Sysctls: defaults, Shares: 2, ImageAnn: "pause:3"}},
		{
			name: "the Pod's user and sysctls win",
			mutate: func(in *sandboxSpecInput) {
				in.Config.Linux = &runtime.LinuxPodSandboxConfig{
					Sysctls:         map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024", "kernel.shm_rmid_forced": "1"},
					SecurityContext: &runtime.LinuxSandboxSecurityContext{RunAsUser: &runtime.Int64Value{Value: 7}}}
			},
			want: summary{Args: []string{"/pause"}, User: "7:0", Readonly: true, Shares: 2, ImageAnn: "pause:3",
				Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024", "net.ipv4.ping_group_range": "0 2147483647", "kernel.shm_rmid_forced": "1"}},
		},
		{
			name: "host network: no network sysctls",
			mutate: func(in *sandboxSpecInput) {
				in.NetNSPath = ""
				in.Config.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}
			},
			want: summary{Args: []string{"/pause"}, User: "65535:65535", Readonly: true, Shares: 2, ImageAnn: "pause:3"},
		},
		{
			name:   "user namespace: neither sysctl",
			mutate: func(in *sandboxSpecInput) { in.UserNS = true },
			want:   summary{Args: []string{"/pause"}, User: "65535:65535", Readonly: true, Shares: 2, ImageAnn: "pause:3"},
		},
		{
			name:   "old kernel: no unprivileged port sysctl",
			mutate: func(in *sandboxSpecInput) { in.UnprivilegedPorts = false },
			want: summary{Args: []string{"/pause"}, User: "65535:65535", Readonly: true, Shares: 2, ImageAnn: "pause:3",
				Sysctls: map[string]string{"net.ipv4.ping_group_range": "0 2147483647"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			opts, err := sandboxSpecOpts(in)
			if err != nil {
				t.Fatal(err)
			}
			ctx := namespaces.WithNamespace(context.Background(), "test")
			s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "s"}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			got := summary{Args: s.Process.Args, Readonly: s.Root.Readonly, Sysctls: s.Linux.Sysctl,
				User: fmt.Sprintf("%d:%d", s.Process.User.UID, s.Process.User.GID), Rlimits: len(s.Process.Rlimits),
				ImageAnn: s.Annotations["io.kubernetes.cri.podsandbox.image-name"]}
			if r := s.Linux.Resources; r != nil && r.CPU != nil && r.CPU.Shares != nil {
				got.Shares = *r.CPU.Shares
			}
			for _, m := range s.Mounts {
				got.RunMount = got.RunMount || m.Destination == "/run"
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}
