package criserver

import (
	"context"
	"strings"
	"testing"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestProcessSpecReadOnce: exec reads a container's process spec from
// containerd once, and forgets it with the container.
func TestProcessSpecReadOnce(t *testing.T) {
	ctx := context.Background()
	id := strings.Repeat("a", 64)
	want := &specs.Process{Args: []string{"sleep", "1"}, Env: []string{"A=1"}, Cwd: "/w"}
	sp, err := typeurl.MarshalAny(&specs.Spec{Process: want})
	if err != nil {
		t.Fatal(err)
	}
	c := fakeContainer(t, id, nil)
	c.Spec = &anypb.Any{TypeUrl: sp.GetTypeUrl(), Value: sp.GetValue()}
	ctrs := &fakeContainers{m: map[string]*containersapi.Container{id: c}}
	s := newFakeService(t, ctrs, nil)
	s.rememberContainer(containers.Container{ID: id, Labels: c.Labels, Extensions: map[string]typeurl.Any{extContainerCfg: c.Extensions[extContainerCfg]}})
	for range 3 {
		got, err := s.processSpec(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("process (-want +got):\n%s", d)
		}
	}
	if ctrs.gets != 1 {
		t.Errorf("read the container %d times, want 1", ctrs.gets)
	}
	s.unindexContainer(id)
	if _, kept := s.procs[id]; kept {
		t.Errorf("process spec kept after the container was dropped")
	}
}
