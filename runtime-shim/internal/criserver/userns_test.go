package criserver

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestParseUserns(t *testing.T) {
	one := []*runtime.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	mapped := podUserns{UIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}},
		GIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}}}
	for _, tc := range []struct {
		name    string
		in      *runtime.UserNamespace
		want    podUserns
		wantErr bool
	}{
		{name: "absent"},
		{name: "node", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE}},
		{name: "node with mappings", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_NODE, Uids: one, Gids: one}, wantErr: true},
		{name: "pod", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD, Uids: one, Gids: one}, want: mapped},
		{name: "pod without mappings", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD}, wantErr: true},
		{name: "two mappings", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: append(one, &runtime.IDMapping{HostId: 2000, Length: 1}), Gids: one}, wantErr: true},
		{name: "0 not mapped", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_POD,
			Uids: []*runtime.IDMapping{{ContainerId: 1, HostId: 1000, Length: 10}}, Gids: one}, wantErr: true},
		{name: "container mode", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_CONTAINER}, wantErr: true},
		{name: "target mode", in: &runtime.UserNamespace{Mode: runtime.NamespaceMode_TARGET}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUserns(tc.in)
			if tc.wantErr {
				if !errors.Is(err, errInvalidSpec) {
					t.Fatalf("err = %v, want errInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
