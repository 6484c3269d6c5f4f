package containerconfig

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
)

// hostUserNS is what upstream sends for every Pod without its own user namespace.
var hostUserNS = &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}

// TestUserNamespaceOptions: the sandbox and each container carry the Pod's
// user namespace; with its own, every mount of a container is ID-mapped
// into it, as upstream does.
func TestUserNamespaceOptions(t *testing.T) {
	ids := []*runtimeapi.IDMapping{{HostId: 131072, ContainerId: 0, Length: 65536}}
	podUserNS := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}
	type mount struct {
		Path       string
		Uids, Gids []*runtimeapi.IDMapping
	}
	for _, tc := range []struct {
		name       string
		hostUsers  *bool
		userns     *runtimeapi.UserNamespace
		wantMounts []mount
		wantErr    bool
	}{
		{name: "hostUsers unset", userns: hostUserNS,
			wantMounts: []mount{{Path: "/data"}, {Path: "/etc/hosts"}, {Path: "/dev/termination-log"}}},
		{name: "hostUsers true", hostUsers: ptr.To(true), userns: hostUserNS,
			wantMounts: []mount{{Path: "/data"}, {Path: "/etc/hosts"}, {Path: "/dev/termination-log"}}},
		{name: "hostUsers false: the Pod's own", hostUsers: ptr.To(false), userns: podUserNS,
			wantMounts: []mount{{"/data", ids, ids}, {"/etc/hosts", ids, ids}, {"/dev/termination-log", ids, ids}}},
		{name: "hostUsers false without a user namespace", hostUsers: ptr.To(false), wantErr: true},
		{name: "hostUsers false in the node's", hostUsers: ptr.To(false), userns: hostUserNS, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod, c := secPod(nil, nil)
			pod.Spec.HostUsers = tc.hostUsers
			c.VolumeMounts = []v1.VolumeMount{{Name: "data", MountPath: "/data"}}
			c.TerminationMessagePath = "/dev/termination-log"
			dir := t.TempDir()
			node := Node{RootDir: dir, CgroupDriver: "cgroupfs", CgroupRoot: "/"}
			sb, sbErr := SandboxConfig(pod, 0, node, tc.userns)
			cc, cErr := ContainerConfig(OSHost{}, ContainerInput{Pod: pod, Container: c, ImageUser: ImageUser{UID: new(int64)},
				Volumes: map[string]HostVolume{"data": {Path: filepath.Join(dir, "data")}}, PodIPs: []string{"10.0.0.2"},
				Node: node, UserNamespace: tc.userns})
			if tc.wantErr {
				if !errors.Is(sbErr, ErrConfig) || !errors.Is(cErr, ErrConfig) {
					t.Errorf("sandbox err %v, container err %v: want ErrConfig", sbErr, cErr)
				}
				return
			}
			if sbErr != nil || cErr != nil {
				t.Fatalf("sandbox err %v, container err %v", sbErr, cErr)
			}
			for what, got := range map[string]*runtimeapi.NamespaceOption{
				"sandbox":   sb.GetLinux().GetSecurityContext().GetNamespaceOptions(),
				"container": cc.GetLinux().GetSecurityContext().GetNamespaceOptions(),
			} {
				if d := cmp.Diff(tc.userns, got.GetUsernsOptions(), protocmp.Transform()); d != "" {
					t.Errorf("%s user namespace (-want +got):\n%s", what, d)
				}
			}
			var mounts []mount
			for _, m := range cc.Mounts {
				mounts = append(mounts, mount{m.ContainerPath, m.UidMappings, m.GidMappings})
			}
			if d := cmp.Diff(tc.wantMounts, mounts, protocmp.Transform()); d != "" {
				t.Errorf("mounts (-want +got):\n%s", d)
			}
		})
	}
}
