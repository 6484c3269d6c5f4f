package criserver

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/validate"
)

// FuzzValidateAndSpec feeds arbitrary CreateContainer and RunPodSandbox
// requests through validation and, when they pass, spec generation: neither
// may panic, and spec generation may only fail with an error.
func FuzzValidateAndSpec(f *testing.F) {
	in := baseInput()
	seed, _ := proto.Marshal(&runtime.CreateContainerRequest{PodSandboxId: "s", Config: in.Config, SandboxConfig: in.Sandbox})
	f.Add(seed, true)
	full := &runtime.CreateContainerRequest{PodSandboxId: "s", SandboxConfig: in.Sandbox, Config: &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: "i"}, Command: []string{"sh"},
		Envs:   []*runtime.KeyValue{{Key: "K", Value: []byte("v")}},
		Mounts: []*runtime.Mount{{ContainerPath: "/m", HostPath: "/tmp", Propagation: runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL}},
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{CpuShares: 2, CpuQuota: 5000, CpuPeriod: 100000, OomScoreAdj: 1000},
			SecurityContext: &runtime.LinuxContainerSecurityContext{
				Capabilities:     &runtime.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"KILL"}},
				NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_NODE, Ipc: runtime.NamespaceMode_NODE},
				MaskedPaths:      []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"},
				Seccomp: &runtime.SecurityProfile{ProfileType: runtime.SecurityProfile_RuntimeDefault},
			}}}}
	seed2, _ := proto.Marshal(full)
	f.Add(seed2, true)
	sbSeed, _ := proto.Marshal(&runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u"}, Hostname: "h",
		Linux: &runtime.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}, CgroupParent: "/kubepods"},
	}})
	f.Add(sbSeed, false)
	ctx := namespaces.WithNamespace(context.Background(), "fuzz")
	f.Fuzz(func(t *testing.T, data []byte, asContainer bool) {
		if asContainer {
			var r runtime.CreateContainerRequest
			if proto.Unmarshal(data, &r) != nil || validate.Request(&r) != nil {
				return
			}
			if r.GetConfig().GetLinux().GetSecurityContext().GetSeccomp().GetProfileType() == runtime.SecurityProfile_Localhost ||
				len(r.GetConfig().GetDevices()) > 0 {
				return // these read host files; not what this fuzzes
			}
			opts, err := containerSpecOpts(specInput{ID: "c", Config: r.GetConfig(), Sandbox: r.GetSandboxConfig(),
				Image: imagespec.ImageConfig{Cmd: []string{"x"}}, SandboxDir: "/sb", NetNSPath: "/ns", SandboxPID: 1, TargetPID: 1})
			if err != nil {
				return
			}
			_, _ = oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c"}, opts...)
			return
		}
		var r runtime.RunPodSandboxRequest
		if proto.Unmarshal(data, &r) != nil || validate.Request(&r) != nil {
			return
		}
		opts, err := sandboxSpecOpts(sandboxSpecInput{Config: r.GetConfig(), Image: imagespec.ImageConfig{Cmd: []string{"/pause"}, User: "65535:65535"}, NetNSPath: "/ns", CgroupPath: "/cg", UnprivilegedPorts: true})
		if err != nil {
			return
		}
		_, _ = oci.GenerateSpec(ctx, nil, &containers.Container{ID: "s"}, opts...)
	})
}
