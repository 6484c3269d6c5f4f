package criserver

import (
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/typeurl/v2"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestKeptRecords: the in-memory copy follows label writes without ever
// changing a map a reader already holds, and a record whose config cannot
// be decoded is indexed as unknown (read from containerd).
func TestKeptRecords(t *testing.T) {
	cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}}
	ext, err := typeurl.MarshalAny(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{ctrs: map[string]*objMeta{}, sbs: map[string]*objMeta{}, live: map[string]*liveTask{}}
	s.rememberContainer(containers.Container{ID: "c1", Labels: map[string]string{labelKind: kindContainer, labelSandboxID: "sb"},
		Extensions: map[string]typeurl.Any{extContainerCfg: ext}})
	s.rememberContainer(containers.Container{ID: "bad", Labels: map[string]string{labelKind: kindContainer}})

	held := s.metaOf(s.ctrs, "c1").labels
	s.noteLabels("c1", map[string]string{labelStarted: "5"})
	s.noteLabels("c1", map[string]string{labelFinished: "6", labelExitCode: "1"})
	s.noteLabels("absent", map[string]string{labelStarted: "7"})

	if diff := cmp.Diff(map[string]string{labelKind: kindContainer, labelSandboxID: "sb"}, held); diff != "" {
		t.Errorf("a held labels map changed (-want +got):\n%s", diff)
	}
	got := s.metaOf(s.ctrs, "c1")
	want := map[string]string{labelKind: kindContainer, labelSandboxID: "sb", labelStarted: "5", labelFinished: "6", labelExitCode: "1"}
	if diff := cmp.Diff(want, got.labels); diff != "" {
		t.Errorf("kept labels (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(cfg, got.ctr, protocmp.Transform()); diff != "" {
		t.Errorf("kept config (-want +got):\n%s", diff)
	}
	if m := s.metaOf(s.ctrs, "bad"); m != nil {
		t.Errorf("undecodable record kept as %+v, want unknown (nil)", m)
	}
	if _, ok := s.metas(s.ctrs); ok {
		t.Error("metas reported a complete index holding an unknown record")
	}
	if _, ok := s.ctrs["absent"]; ok {
		t.Error("noteLabels created a record")
	}
}
