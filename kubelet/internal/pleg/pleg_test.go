package pleg

import (
	"context"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

func TestRelistNotifiesChangedPods(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	var got []string
	p := &PLEG{RT: rs, Log: zap.NewNop(), Notify: func(uid types.UID) { got = append(got, string(uid)) }}
	ctx := context.Background()
	sb := func(uid string) string {
		id, err := rs.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: uid, Uid: uid, Namespace: "ns"},
			Labels: map[string]string{"io.kubernetes.pod.uid": uid}}, "")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	relist := func() []string {
		got = nil
		if err := p.Relist(ctx); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		return got
	}
	a, _ := sb("a"), sb("b")
	if d := cmp.Diff([]string{"a", "b"}, relist()); d != "" {
		t.Errorf("new sandboxes (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string(nil), relist()); d != "" {
		t.Errorf("nothing changed (-want +got):\n%s", d)
	}
	cid, err := rs.CreateContainer(ctx, a, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image: &runtimeapi.ImageSpec{Image: "i"}, Labels: map[string]string{"io.kubernetes.pod.uid": "a"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a"}, relist()); d != "" {
		t.Errorf("container created (-want +got):\n%s", d)
	}
	_ = rs.StartContainer(ctx, cid)
	if d := cmp.Diff([]string{"a"}, relist()); d != "" {
		t.Errorf("container started (-want +got):\n%s", d)
	}
	_ = rs.RemoveContainer(ctx, cid)
	if d := cmp.Diff([]string{"a"}, relist()); d != "" {
		t.Errorf("container removed (-want +got):\n%s", d)
	}
}
