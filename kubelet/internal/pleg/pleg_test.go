package pleg

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// listTimer records when the last ListContainers returned.
type listTimer struct {
	*critest.FakeRuntimeService
	listed time.Time
}

func (l *listTimer) ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	cs, err := l.FakeRuntimeService.ListContainers(ctx, f)
	l.listed = time.Now()
	return cs, err
}

func TestRelistNotifiesChangedPods(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	lt := &listTimer{FakeRuntimeService: rs}
	var got []string
	var ats []time.Time
	p := &PLEG{RT: lt, Log: zap.NewNop(), Notify: func(uid types.UID, at time.Time) {
		got = append(got, string(uid))
		ats = append(ats, at)
	}}
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
		got, ats = nil, nil
		if err := p.Relist(ctx); err != nil {
			t.Fatal(err)
		}
		// The change time is taken once the listing is done: a change it
		// shows may have happened while it ran, so a worker may skip it
		// only if it read the runtime after the whole listing.
		for _, at := range ats {
			if at.Before(lt.listed) || at.After(time.Now()) {
				t.Errorf("notified at %v, before the listing ended at %v", at, lt.listed)
			}
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

// A change a container event already announced (with the states the
// runtime sends along) is not notified again by the next relist; a change
// no event announced is.
func TestRelistSkipsAnnouncedChanges(t *testing.T) {
	rs := critest.NewFakeRuntimeService()
	var got []string
	p := &PLEG{RT: rs, Log: zap.NewNop(), Notify: func(uid types.UID, _ time.Time) { got = append(got, string(uid)) }}
	ctx := context.Background()
	relist := func() []string {
		got = nil
		if err := p.Relist(ctx); err != nil {
			t.Fatal(err)
		}
		return got
	}
	labels := map[string]string{"io.kubernetes.pod.uid": "a"}
	sb, err := rs.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "a", Uid: "a", Namespace: "ns"},
		Labels: labels}, "")
	if err != nil {
		t.Fatal(err)
	}
	cid, err := rs.CreateContainer(ctx, sb, &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image: &runtimeapi.ImageSpec{Image: "i"}, Labels: labels}, nil)
	if err != nil {
		t.Fatal(err)
	}
	event := func(typ runtimeapi.ContainerEventType, id string, state runtimeapi.ContainerState) *runtimeapi.ContainerEventResponse {
		ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ,
			PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: sb, State: runtimeapi.PodSandboxState_SANDBOX_READY, Labels: labels}}
		if typ != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
			ev.ContainersStatuses = []*runtimeapi.ContainerStatus{{Id: id, State: state}}
		}
		return ev
	}
	var steps []string
	step := func(name string) { steps = append(steps, fmt.Sprintf("%s: %v", name, relist())) }
	step("new pod")
	_ = rs.StartContainer(ctx, cid)
	p.announce(event(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, cid, runtimeapi.ContainerState_CONTAINER_RUNNING))
	step("started, announced")
	_ = rs.StopContainer(ctx, cid, 0)
	step("exited, not announced")
	p.announce(event(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, cid, runtimeapi.ContainerState_CONTAINER_RUNNING))
	step("announced state not what the runtime shows")
	_ = rs.RemoveContainer(ctx, cid)
	p.announce(event(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, cid, 0))
	step("removed, announced")
	step("nothing")
	want := []string{"new pod: [a]", "started, announced: []", "exited, not announced: [a]",
		"announced state not what the runtime shows: []", "removed, announced: []", "nothing: []"}
	if d := cmp.Diff(want, steps); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if n := len(p.announced); n != 0 {
		t.Errorf("%d announcements kept, want none: consumed or dropped after two relists", n)
	}
}
