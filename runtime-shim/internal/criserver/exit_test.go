package criserver

import (
	"context"
	"strings"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Update applies the label paths of the mask, as containerd does for SetLabels.
func (f *fakeContainers) Update(_ context.Context, r *containersapi.UpdateContainerRequest, _ ...grpc.CallOption) (*containersapi.UpdateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.m[r.Container.ID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q: not found", r.Container.ID)
	}
	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	for _, p := range r.GetUpdateMask().GetPaths() {
		k, ok := strings.CutPrefix(p, "labels.")
		if !ok {
			return nil, status.Errorf(codes.Unimplemented, "fake: update of %q", p)
		}
		labels[k] = r.Container.Labels[k]
	}
	n := proto.Clone(c).(*containersapi.Container)
	n.Labels = labels
	f.m[c.ID] = n
	return &containersapi.UpdateContainerResponse{Container: n}, nil
}

func (f *fakeTasks) Delete(_ context.Context, r *tasksapi.DeleteTaskRequest, _ ...grpc.CallOption) (*tasksapi.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.m[r.ContainerID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "task %q: not found", r.ContainerID)
	}
	delete(f.m, r.ContainerID)
	return &tasksapi.DeleteResponse{ID: r.ContainerID, Pid: p.Pid, ExitStatus: p.ExitStatus, ExitedAt: p.ExitedAt}, nil
}

// TestExitVisibleOnceComplete: a container whose process has exited reads
// RUNNING until its log is drained, its exit recorded and its task
// deleted, as on containerd's CRI; then EXITED with the shim's exit time.
// Showing the exit at once let the upstream kubelet, relisting right after
// StartContainer, publish a status naming as lastState the previous
// instance it was removing.
func TestExitVisibleOnceComplete(t *testing.T) {
	ctx := context.Background()
	id := strings.Repeat("e", 64)
	ctrs := &fakeContainers{m: map[string]*containersapi.Container{id: fakeContainer(t, id, map[string]string{labelStarted: "20"})}}
	tasks := &fakeTasks{m: map[string]*tasktypes.Process{}, broken: map[string]bool{}}
	s := newFakeService(t, ctrs, tasks)
	if err := s.Recover(ctx); err != nil { // no tasks yet: only the index
		t.Fatal(err)
	}
	// Started by this shim; its process has exited and the runc shim holds the exit.
	s.setLive(id, 7)
	exitedAt := time.Unix(0, 30)
	tasks.m[id] = &tasktypes.Process{ID: id, Pid: 7, Status: tasktypes.Status_STOPPED, ExitStatus: 3, ExitedAt: timestamppb.New(exitedAt)}

	type seen struct {
		Status, List runtime.ContainerState
		ExitCode     int32
		StartedAt    int64
		FinishedAt   int64
	}
	look := func() seen {
		t.Helper()
		st, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.ListContainers(ctx, &runtime.ListContainersRequest{})
		if err != nil || len(l.Containers) != 1 {
			t.Fatalf("ListContainers = %v, %v; want one container", l, err)
		}
		return seen{Status: st.Status.State, List: l.Containers[0].State, ExitCode: st.Status.ExitCode,
			StartedAt: st.Status.StartedAt, FinishedAt: st.Status.FinishedAt}
	}

	draining, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		s.finishExit(ctx, id, 3, exitedAt, func() { close(draining); <-release })
	}()
	<-draining
	running := runtime.ContainerState_CONTAINER_RUNNING
	if d := cmp.Diff(seen{Status: running, List: running, StartedAt: 20}, look()); d != "" {
		t.Errorf("while the log drains (-want +got):\n%s", d)
	}
	close(release)
	<-done
	exited := runtime.ContainerState_CONTAINER_EXITED
	if d := cmp.Diff(seen{Status: exited, List: exited, ExitCode: 3, StartedAt: 20, FinishedAt: 30}, look()); d != "" {
		t.Errorf("once complete (-want +got):\n%s", d)
	}
	if _, ok := tasks.m[id]; ok {
		t.Errorf("task not deleted")
	}
	if got := ctrs.m[id].Labels[labelFinished]; got != "30" {
		t.Errorf("finished label = %q, want 30 (durable exit)", got)
	}
}

// TestWithUserLabel: the user label is taken from the finished spec, and
// ContainerStatus reads it back.
func TestWithUserLabel(t *testing.T) {
	labels := map[string]string{}
	sp := &oci.Spec{Process: &specs.Process{User: specs.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{2000, 3}}}}
	if err := withUserLabel(labels)(context.Background(), nil, nil, sp); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{labelUser: "1000:2000:2000,3"}, labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	want := &runtime.LinuxContainerUser{Uid: 1000, Gid: 2000, SupplementalGroups: []int64{2000, 3}}
	if d := cmp.Diff(want, parseUser(labels[labelUser]), protocmp.Transform()); d != "" {
		t.Errorf("parsed (-want +got):\n%s", d)
	}
}
