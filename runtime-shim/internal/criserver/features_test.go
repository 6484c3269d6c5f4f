package criserver

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestFeaturesFrom(t *testing.T) {
	yes := true
	idmap := &features.Linux{Namespaces: []string{"user", "mount"}, MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &yes}}}
	for _, tc := range []struct {
		name      string
		f         *features.Features
		kernelRRO bool
		want      handlerFeatures
	}{
		{"nothing", &features.Features{}, true, handlerFeatures{}},
		{"rro", &features.Features{MountOptions: []string{"ro", "rro"}}, true, handlerFeatures{RRO: true}},
		{"rro, old kernel", &features.Features{MountOptions: []string{"rro"}}, false, handlerFeatures{}},
		{"userns with idmap", &features.Features{Linux: idmap}, true, handlerFeatures{UserNS: true}},
		{"userns without idmap", &features.Features{Linux: &features.Linux{Namespaces: []string{"user"}}}, true, handlerFeatures{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, featuresFrom(tc.f, tc.kernelRRO)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCRIMountsRecursiveReadOnly(t *testing.T) {
	m := func(ro, rro bool, p runtime.MountPropagation) []*runtime.Mount {
		return []*runtime.Mount{{HostPath: "/h", ContainerPath: "/c", Readonly: ro, RecursiveReadOnly: rro, Propagation: p}}
	}
	for _, tc := range []struct {
		name      string
		in        []*runtime.Mount
		supported bool
		wantOpts  []string
		wantErr   bool
	}{
		{"plain ro", m(true, false, runtime.MountPropagation_PROPAGATION_PRIVATE), false, []string{"rbind", "rprivate", "ro"}, false},
		{"rro", m(true, true, runtime.MountPropagation_PROPAGATION_PRIVATE), true, []string{"rbind", "rprivate", "rro"}, false},
		{"rro unsupported", m(true, true, runtime.MountPropagation_PROPAGATION_PRIVATE), false, nil, true},
		{"rro with rw", m(false, true, runtime.MountPropagation_PROPAGATION_PRIVATE), true, nil, true},
		{"rro with host-to-container", m(true, true, runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER), true, nil, true},
		{"rro with bidirectional", m(true, true, runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL), true, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := criMounts(tc.in, tc.supported)
			if tc.wantErr {
				if !errors.Is(err, errInvalidSpec) {
					t.Fatalf("err = %v, want errInvalidSpec", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantOpts, got[0].Options); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUserLabelRoundTrip(t *testing.T) {
	u := specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1234, 50000}}
	want := &runtime.LinuxContainerUser{Uid: 1000, Gid: 1000, SupplementalGroups: []int64{1000, 1234, 50000}}
	if diff := cmp.Diff(want, parseUser(formatUser(u)), cmp.Comparer(func(a, b *runtime.LinuxContainerUser) bool {
		return a.String() == b.String()
	})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := parseUser("garbage"); got != nil {
		t.Errorf("parseUser(garbage) = %v, want nil", got)
	}
}
