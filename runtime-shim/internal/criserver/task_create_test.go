package criserver

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestWithTaskInputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec oci.Spec
		want taskInputs
	}{
		{"no linux section", oci.Spec{}, taskInputs{snapshotKey: "k"}},
		{"mount label", oci.Spec{Linux: &specs.Linux{MountLabel: "system_u:object_r:container_file_t:s0"}},
			taskInputs{snapshotKey: "k", mountLabel: "system_u:object_r:container_file_t:s0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := taskInputs{snapshotKey: "k"}
			if err := withTaskInputs(&got)(context.Background(), nil, nil, &tc.spec); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(taskInputs{})); d != "" {
				t.Errorf("inputs (-want +got):\n%s", d)
			}
		})
	}
}

// The inputs kept at create serve one start and are gone after it, and
// after the container's removal.
func TestTaskInputsKeptOnce(t *testing.T) {
	s := &Service{ctrs: map[string]*objMeta{}, sbs: map[string]*objMeta{}, live: map[string]*liveTask{}}
	in := taskInputs{snapshotter: "overlayfs", snapshotKey: "c1"}
	s.keepTaskInputs("c1", in)
	s.keepTaskInputs("c2", in)
	got, err := s.takeTaskInputs(context.Background(), "c1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(in, got, cmp.AllowUnexported(taskInputs{})); d != "" {
		t.Errorf("taken (-want +got):\n%s", d)
	}
	s.unindexContainer("c2")
	if d := cmp.Diff(map[string]taskInputs{}, s.taskIns, cmp.AllowUnexported(taskInputs{})); d != "" {
		t.Errorf("left (-want +got):\n%s", d)
	}
}
