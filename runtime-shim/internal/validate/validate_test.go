package validate

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func goodSandbox() *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}}
}

func goodContainer() *runtime.ContainerConfig {
	return &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "c"},
		Image:    &runtime.ImageSpec{Image: "busybox"},
	}
}

func TestRequest(t *testing.T) {
	withMount := goodContainer()
	withMount.Mounts = []*runtime.Mount{{ContainerPath: "rel", HostPath: "/x"}}
	withEnv := goodContainer()
	withEnv.Envs = []*runtime.KeyValue{{Key: "A=B"}}
	hostNetSandbox := goodSandbox()
	hostNetSandbox.Linux = &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}
	for _, tc := range []struct {
		name      string
		req       any
		wantField string // "" means valid
	}{
		{"run ok", &runtime.RunPodSandboxRequest{Config: goodSandbox()}, ""},
		{"run host network ok", &runtime.RunPodSandboxRequest{Config: hostNetSandbox}, ""},
		{"run nil config", &runtime.RunPodSandboxRequest{}, "config"},
		{"run no uid", &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n"}}}, "config.metadata.uid"},
		{"stop no id", &runtime.StopPodSandboxRequest{}, "pod_sandbox_id"},
		{"create ok", &runtime.CreateContainerRequest{PodSandboxId: "s", Config: goodContainer(), SandboxConfig: goodSandbox()}, ""},
		{"create no image", &runtime.CreateContainerRequest{PodSandboxId: "s", Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}}, SandboxConfig: goodSandbox()}, "config.image"},
		{"create relative mount", &runtime.CreateContainerRequest{PodSandboxId: "s", Config: withMount, SandboxConfig: goodSandbox()}, "config.mounts[0].container_path"},
		{"create bad env", &runtime.CreateContainerRequest{PodSandboxId: "s", Config: withEnv, SandboxConfig: goodSandbox()}, "config.envs[0].key"},
		{"exec empty cmd", &runtime.ExecSyncRequest{ContainerId: "c"}, "cmd"},
		{"exec no stream", &runtime.ExecRequest{ContainerId: "c", Cmd: []string{"sh"}}, "stdin"},
		{"portforward bad port", &runtime.PortForwardRequest{PodSandboxId: "s", Port: []int32{70000}}, "port[0]"},
		{"pull nil image", &runtime.PullImageRequest{}, "image"},
		{"pull empty image", &runtime.PullImageRequest{Image: &runtime.ImageSpec{}}, "image.image"},
		{"id with slash", &runtime.ContainerStatusRequest{ContainerId: "../x"}, "container_id"},
		{"list passes", &runtime.ListContainersRequest{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Request(tc.req)
			var fe *FieldError
			got := ""
			if errors.As(err, &fe) {
				got = fe.Field
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("%v does not wrap ErrInvalid", err)
				}
			} else if err != nil {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			if d := cmp.Diff(tc.wantField, got); d != "" {
				t.Fatalf("field (-want +got): %s (err %v)", d, err)
			}
		})
	}
}

func TestRunAsGroupNeedsUser(t *testing.T) {
	c := goodContainer()
	c.Linux = &runtime.LinuxContainerConfig{SecurityContext: &runtime.LinuxContainerSecurityContext{RunAsGroup: &runtime.Int64Value{Value: 5}}}
	var fe *FieldError
	if err := Request(&runtime.CreateContainerRequest{PodSandboxId: "s", Config: c, SandboxConfig: goodSandbox()}); !errors.As(err, &fe) ||
		fe.Field != "config.linux.security_context.run_as_group" {
		t.Fatalf("got %v", err)
	}
}
