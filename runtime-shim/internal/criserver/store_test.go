package criserver

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/errdefs"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/config"
)

// fakeContainers is containerd's container service holding CRI containers;
// it counts the List calls a lookup makes.
type fakeContainers struct {
	containersapi.ContainersClient
	mu    sync.Mutex
	m     map[string]*containersapi.Container
	lists int
	gets  int
	after *afterRead
}

// afterRead runs a function once, after the first read of either fake
// service: the world changing between two reads.
type afterRead struct {
	once sync.Once
	f    func()
}

func (a *afterRead) fire() {
	if a != nil {
		a.once.Do(a.f)
	}
}

func (f *fakeContainers) Get(_ context.Context, r *containersapi.GetContainerRequest, _ ...grpc.CallOption) (*containersapi.GetContainerResponse, error) {
	defer f.after.fire()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	c, ok := f.m[r.ID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q: not found", r.ID)
	}
	return &containersapi.GetContainerResponse{Container: c}, nil
}

func (f *fakeContainers) ListStream(context.Context, *containersapi.ListContainersRequest, ...grpc.CallOption) (containersapi.Containers_ListStreamClient, error) {
	return unimplementedStream{}, nil // the client falls back to List
}

type unimplementedStream struct{ grpc.ClientStream }

func (unimplementedStream) Recv() (*containersapi.ListContainerMessage, error) {
	return nil, status.Error(codes.Unimplemented, "no streaming")
}

func (f *fakeContainers) List(context.Context, *containersapi.ListContainersRequest, ...grpc.CallOption) (*containersapi.ListContainersResponse, error) {
	defer f.after.fire()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	resp := &containersapi.ListContainersResponse{}
	for _, c := range f.m {
		resp.Containers = append(resp.Containers, c)
	}
	return resp, nil
}

// fakeTasks is containerd's task service. Once broken, listing all tasks
// fails, as when one task's shim is going away, and so does asking about a
// task in the set broken.
type fakeTasks struct {
	tasksapi.TasksClient
	mu     sync.Mutex
	m      map[string]*tasktypes.Process
	broken map[string]bool
	lists  int
	after  *afterRead
}

func (f *fakeTasks) Get(_ context.Context, r *tasksapi.GetRequest, _ ...grpc.CallOption) (*tasksapi.GetResponse, error) {
	defer f.after.fire()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken[r.ContainerID] {
		return nil, status.Error(codes.Unavailable, "ttrpc: closed")
	}
	p, ok := f.m[r.ContainerID]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "task %q: not found", r.ContainerID)
	}
	return &tasksapi.GetResponse{Process: p}, nil
}

func (f *fakeTasks) List(context.Context, *tasksapi.ListTasksRequest, ...grpc.CallOption) (*tasksapi.ListTasksResponse, error) {
	defer f.after.fire()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if len(f.broken) > 0 {
		return nil, status.Error(codes.Unavailable, "ttrpc: closed")
	}
	resp := &tasksapi.ListTasksResponse{}
	for _, p := range f.m {
		resp.Tasks = append(resp.Tasks, p)
	}
	return resp, nil
}

// newFakeService is a Service over fake containerd containers and, unless
// tasks is nil, tasks.
func newFakeService(t *testing.T, ctrs *fakeContainers, tasks *fakeTasks) *Service {
	t.Helper()
	opts := []containerd.ServicesOpt{containerd.WithContainerClient(ctrs), containerd.WithSandboxStore(&fakeSandboxStore{m: map[string]sandbox.Sandbox{}})}
	if tasks != nil {
		opts = append(opts, containerd.WithTaskClient(tasks))
	}
	client, err := containerd.NewWithConn(nil, containerd.WithServices(opts...))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(config.Config{StateDir: t.TempDir(), ContainerdNamespace: "test"}, client, nil, fakeHost{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type fakeHost struct{}

func (fakeHost) NewNetNS(string) (string, error) { return "", nil }
func (fakeHost) RemoveNetNS(string) error        { return nil }
func (fakeHost) OOMScoreAdjMin() (int64, error)  { return -1000, nil }
func (fakeHost) MountShm(string) error           { return nil }
func (fakeHost) UnmountShm(string) error         { return nil }

func fakeContainer(t *testing.T, id string, labels map[string]string) *containersapi.Container {
	t.Helper()
	ext, err := anypb.New(&runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c-" + id}})
	if err != nil {
		t.Fatal(err)
	}
	l := map[string]string{labelKind: kindContainer, labelName: "c-" + id, labelSandboxID: "sb", labelCreated: "1"}
	for k, v := range labels {
		l[k] = v
	}
	return &containersapi.Container{ID: id, Labels: l, Extensions: map[string]*anypb.Any{extContainerCfg: ext}}
}

// TestGetContainerUsesIndex: resolving a container goes through the index
// rebuilt by Recover and reads that one container, so ContainerStatus
// neither lists every container nor fails because of another one (here the
// task listing fails while a neighbour's shim goes away).
func TestGetContainerUsesIndex(t *testing.T) {
	ctrs := &fakeContainers{m: map[string]*containersapi.Container{}}
	tasks := &fakeTasks{m: map[string]*tasktypes.Process{}, broken: map[string]bool{}}
	const n = 50
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%02d%062d", i, i)
		ctrs.m[id] = fakeContainer(t, id, map[string]string{labelStarted: "2"})
		tasks.m[id] = &tasktypes.Process{ID: id, Status: tasktypes.Status_RUNNING, Pid: uint32(100 + i)}
	}
	exited := "ee" + fmt.Sprintf("%062d", 0)
	ctrs.m[exited] = fakeContainer(t, exited, map[string]string{labelStarted: "2", labelFinished: "3", labelExitCode: "0"})
	dying := "dd" + fmt.Sprintf("%062d", 0) // exit recorded, task being deleted
	ctrs.m[dying] = fakeContainer(t, dying, map[string]string{labelStarted: "2", labelFinished: "3", labelExitCode: "1"})
	tasks.m[dying] = &tasktypes.Process{ID: dying, Status: tasktypes.Status_STOPPED, ExitStatus: 1}
	sandbox := "5b" + fmt.Sprintf("%062d", 0)
	ctrs.m[sandbox] = &containersapi.Container{ID: sandbox, Labels: map[string]string{labelKind: kindSandbox}}

	s := newFakeService(t, ctrs, tasks)
	// Recover with no tasks yet, so it only rebuilds the index (it would
	// otherwise adopt running tasks and record exits).
	live := tasks.m
	tasks.m = map[string]*tasktypes.Process{}
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	tasks.m = live
	tasks.broken[dying] = true
	ctrs.lists, tasks.lists, ctrs.gets = 0, 0, 0

	ctx := context.Background()
	for _, tc := range []struct {
		in    string
		code  codes.Code
		state runtime.ContainerState
		exit  int32
	}{
		{in: exited, state: runtime.ContainerState_CONTAINER_EXITED},
		{in: "ee", state: runtime.ContainerState_CONTAINER_EXITED},
		{in: dying, state: runtime.ContainerState_CONTAINER_EXITED, exit: 1},
		{in: "07", state: runtime.ContainerState_CONTAINER_RUNNING},
		{in: "0", code: codes.InvalidArgument},
		{in: "ff", code: codes.NotFound},
		{in: sandbox, code: codes.NotFound},
	} {
		r, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: tc.in})
		if status.Code(err) != tc.code {
			t.Errorf("ContainerStatus(%.8s): %v, want code %v", tc.in, err, tc.code)
			continue
		}
		if err == nil && (r.Status.State != tc.state || r.Status.ExitCode != tc.exit) {
			t.Errorf("ContainerStatus(%.8s) = %v exit %d, want %v exit %d", tc.in, r.Status.State, r.Status.ExitCode, tc.state, tc.exit)
		}
	}
	if ctrs.lists != 0 || tasks.lists != 0 {
		t.Errorf("lookups listed containers %d times and tasks %d times; want per-ID reads only", ctrs.lists, tasks.lists)
	}
	if ctrs.gets != 0 {
		t.Errorf("lookups read %d containerd container records; want 0 (kept in memory since Recover)", ctrs.gets)
	}

	// A container that left the index (RemoveContainer) is NotFound.
	s.unindexContainer(exited)
	if _, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "ee"}); status.Code(err) != codes.NotFound {
		t.Errorf("removed container: %v, want NotFound", err)
	}
	if got := len(s.containerIDs()); got != n+1 {
		t.Errorf("index holds %d IDs, want %d", got, n+1)
	}
}

// TestStateReadRacesExit: a container that starts, exits and is reaped
// between the shim's two reads (task, labels) must not look CREATED. Read
// labels-then-task, it did: the kubelet then kept the deleted previous
// container as the Pod's last terminated one and "logs --previous" failed
// (e2e TestRestartPolicy/Always). Both the per-ID path (ContainerStatus) and
// the list path (ListContainers) are covered.
func TestStateReadRacesExit(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(*Service, string) (runtime.ContainerState, error)
	}{
		{"ContainerStatus", func(s *Service, id string) (runtime.ContainerState, error) {
			r, err := s.ContainerStatus(context.Background(), &runtime.ContainerStatusRequest{ContainerId: id})
			return r.GetStatus().GetState(), err
		}},
		{"ListContainers", func(s *Service, id string) (runtime.ContainerState, error) {
			r, err := s.ListContainers(context.Background(), &runtime.ListContainersRequest{})
			if err != nil {
				return 0, err
			}
			for _, c := range r.Containers {
				if c.Id == id {
					return c.State, nil
				}
			}
			return 0, fmt.Errorf("%s not listed", id)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("%064d", 7)
			ctrs := &fakeContainers{m: map[string]*containersapi.Container{id: fakeContainer(t, id, nil)}}
			tasks := &fakeTasks{m: map[string]*tasktypes.Process{id: {ID: id, Status: tasktypes.Status_RUNNING, Pid: 42}}, broken: map[string]bool{}}
			s := newFakeService(t, ctrs, tasks)
			s.indexContainer(id)
			s.setLive(id, 42) // StartContainer registers the task with the monitors before starting it
			// Just started (its start not yet recorded); after the first
			// read it records its start, exits, the exit is recorded and
			// the task deleted, as StartContainer and the monitor do.
			exit := &afterRead{f: func() {
				ctrs.mu.Lock()
				ctrs.m[id] = fakeContainer(t, id, map[string]string{labelStarted: "2", labelFinished: "3", labelExitCode: "0"})
				ctrs.mu.Unlock()
				tasks.mu.Lock()
				delete(tasks.m, id)
				tasks.mu.Unlock()
			}}
			ctrs.after, tasks.after = exit, exit
			got, err := tc.read(s, id)
			if err != nil {
				t.Fatal(err)
			}
			// Either answer the world had at some instant is right; a
			// started container is never CREATED again.
			if got != runtime.ContainerState_CONTAINER_RUNNING && got != runtime.ContainerState_CONTAINER_EXITED {
				t.Errorf("state = %v, want RUNNING or EXITED", got)
			}
		})
	}
}

// TestListUsesMonitors: ListContainers takes task states from this shim's
// monitors, asks containerd only about a started task they do not know,
// and never lists every task (a round trip to every runc shim).
func TestListUsesMonitors(t *testing.T) {
	id := func(c byte) string { return string(c) + fmt.Sprintf("%063d", 0) }
	running, exited, created, unwatched := id('a'), id('b'), id('c'), id('d')
	ctrs := &fakeContainers{m: map[string]*containersapi.Container{
		running:   fakeContainer(t, running, map[string]string{labelStarted: "2"}),
		exited:    fakeContainer(t, exited, map[string]string{labelStarted: "2"}),
		created:   fakeContainer(t, created, nil),
		unwatched: fakeContainer(t, unwatched, map[string]string{labelStarted: "2"}),
	}}
	tasks := &fakeTasks{m: map[string]*tasktypes.Process{unwatched: {ID: unwatched, Status: tasktypes.Status_RUNNING, Pid: 9}}, broken: map[string]bool{}}
	s := newFakeService(t, ctrs, tasks)
	// Recover with no tasks, so it only rebuilds the index.
	withTasks := tasks.m
	tasks.m = map[string]*tasktypes.Process{}
	if err := s.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	tasks.m, tasks.lists, ctrs.lists = withTasks, 0, 0
	s.setLive(running, 7)
	s.setLive(exited, 8)
	s.liveExited(exited, 3, time.Unix(5, 0))
	r, err := s.ListContainers(context.Background(), &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]runtime.ContainerState{}
	for _, c := range r.Containers {
		got[c.Id] = c.State
	}
	want := map[string]runtime.ContainerState{running: runtime.ContainerState_CONTAINER_RUNNING,
		exited: runtime.ContainerState_CONTAINER_EXITED, created: runtime.ContainerState_CONTAINER_CREATED,
		unwatched: runtime.ContainerState_CONTAINER_RUNNING}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if tasks.lists != 0 {
		t.Errorf("ListContainers listed every task %d times, want 0", tasks.lists)
	}
	if ctrs.lists != 0 {
		t.Errorf("ListContainers listed containerd's containers %d times, want 0 (kept in memory)", ctrs.lists)
	}
}

// fakeSandboxStore is containerd's sandbox store in memory.
type fakeSandboxStore struct {
	mu sync.Mutex
	m  map[string]sandbox.Sandbox
}

func (f *fakeSandboxStore) Create(_ context.Context, sb sandbox.Sandbox) (sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[sb.ID]; ok {
		return sandbox.Sandbox{}, fmt.Errorf("sandbox %q: %w", sb.ID, errdefs.ErrAlreadyExists)
	}
	f.m[sb.ID] = sb
	return sb, nil
}

func (f *fakeSandboxStore) Update(_ context.Context, sb sandbox.Sandbox, _ ...string) (sandbox.Sandbox, error) {
	return sandbox.Sandbox{}, fmt.Errorf("fake: update: %w", errdefs.ErrNotImplemented)
}

func (f *fakeSandboxStore) Get(_ context.Context, id string) (sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.m[id]
	if !ok {
		return sandbox.Sandbox{}, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return sb, nil
}

func (f *fakeSandboxStore) List(context.Context, ...string) ([]sandbox.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sandbox.Sandbox
	for _, sb := range f.m {
		out = append(out, sb)
	}
	return out, nil
}

func (f *fakeSandboxStore) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[id]; !ok {
		return fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	delete(f.m, id)
	return nil
}

func (f *fakeSandboxStore) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// TestRecoverDropsOrphanSandboxRecords: restart invariant 5. A record whose
// pause container is gone (an interrupted RunPodSandbox or
// RemovePodSandbox) is deleted; a live sandbox's record and records that
// are not ours stay.
func TestRecoverDropsOrphanSandboxRecords(t *testing.T) {
	live, orphan, foreign := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	ctrs := &fakeContainers{m: map[string]*containersapi.Container{
		live: fakeContainer(t, live, map[string]string{labelKind: kindSandbox, labelName: "p_ns_uid_0"})}}
	s := newFakeService(t, ctrs, &fakeTasks{m: map[string]*tasktypes.Process{}, broken: map[string]bool{}})
	store := s.client.SandboxStore().(*fakeSandboxStore)
	ctx := context.Background()
	for id, labels := range map[string]map[string]string{
		live: {labelKind: kindSandbox}, orphan: {labelKind: kindSandbox}, foreign: {"owner": "someone else"}} {
		if _, err := store.Create(ctx, sandbox.Sandbox{ID: id, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{live, foreign}, store.ids()); d != "" {
		t.Fatalf("sandbox records (-want +got):\n%s", d)
	}
}
