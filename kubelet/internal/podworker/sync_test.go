package podworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"google.golang.org/protobuf/testing/protocmp"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
	"github.com/nodesuite/nodesuite/kubelet/internal/userns"
)

type fixture struct {
	rs       *critest.FakeRuntimeService
	is       *critest.FakeImageService
	syncer   *Syncer
	recorder *record.FakeRecorder
}

func newFixture(t *testing.T) *fixture {
	rs, is := critest.NewFakeRuntimeService(), critest.NewFakeImageService()
	rec := record.NewFakeRecorder(1000)
	dir := t.TempDir()
	return &fixture{rs: rs, is: is, recorder: rec, syncer: &Syncer{
		RT: &runtime.Runtime{RuntimeService: rs, ImageManagerService: is}, RuntimeName: "fake", Recorder: rec,
		Node:    containerconfig.Node{Name: "node1", RootDir: dir, PodLogsDir: dir + "/logs", CgroupDriver: "cgroupfs"},
		HostIPs: []string{"192.0.2.10"}, Host: containerconfig.OSHost{}, Backoff: backoff.New(5 * time.Minute),
		ImageBackoff: backoff.New(5 * time.Minute), Log: zap.NewNop(), UserNS: newUserNS(t, dir, true)}}
}

// newUserNS is a user namespace manager under rootDir whose runtime's
// default handler supports user namespaces or not.
func newUserNS(t *testing.T, rootDir string, supported bool) *userns.Manager {
	t.Helper()
	status := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: true}}},
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{Name: "", Features: &runtimeapi.RuntimeHandlerFeatures{UserNamespaces: supported}}}}
	h := &userns.Handlers{Status: func(context.Context, bool) (*runtimeapi.StatusResponse, error) { return status, nil }}
	m, err := userns.New(userns.Config{PodsDir: filepath.Join(rootDir, "pods"), MaxPods: 110, Runtime: h})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testPod(policy v1.RestartPolicy, init []v1.Container, cs ...v1.Container) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: v1.PodSpec{RestartPolicy: policy, InitContainers: init, Containers: cs, DNSPolicy: v1.DNSDefault}}
}

func ctr(name string) v1.Container {
	return v1.Container{Name: name, Image: "registry.k8s.io/e2e-test-images/busybox:1.37.0-2", ImagePullPolicy: v1.PullIfNotPresent}
}

// exit marks the newest instance of a container exited with code.
func (f *fixture) exit(t *testing.T, name string, code int32) {
	t.Helper()
	f.rs.Lock()
	defer f.rs.Unlock()
	var newest *critest.FakeContainer
	for _, c := range f.rs.Containers {
		if c.Metadata.Name == name && (newest == nil || c.CreatedAt > newest.CreatedAt) {
			newest = c
		}
	}
	if newest == nil {
		t.Fatalf("no container %s", name)
	}
	newest.State, newest.ExitCode, newest.FinishedAt = runtimeapi.ContainerState_CONTAINER_EXITED, code, time.Now().UnixNano()
	newest.Reason = "Completed"
	if code != 0 {
		newest.Reason = "Error"
	}
}

// states summarizes the runtime: container name -> states of its instances, oldest first.
func (f *fixture) states(t *testing.T) map[string][]string {
	t.Helper()
	rp, err := f.syncer.RT.GetPod(context.Background(), "uid-1")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for i := len(rp.Containers) - 1; i >= 0; i-- {
		c := rp.Containers[i]
		out[c.Name] = append(out[c.Name], c.Status.State.String())
	}
	for i := len(rp.Sandboxes) - 1; i >= 0; i-- {
		out["sandbox"] = append(out["sandbox"], rp.Sandboxes[i].State.String())
	}
	return out
}

func (f *fixture) sync(t *testing.T, pod *v1.Pod) Result {
	t.Helper()
	res, _ := f.syncer.SyncPod(context.Background(), pod)
	return res
}

const (
	running = "CONTAINER_RUNNING"
	exited  = "CONTAINER_EXITED"
	ready   = "SANDBOX_READY"
	notRdy  = "SANDBOX_NOTREADY"
)

func TestSyncInitThenAppContainers(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	pod := testPod(v1.RestartPolicyAlways, []v1.Container{ctr("init1"), ctr("init2")}, ctr("a"), ctr("b"))
	steps := []struct {
		do   func()
		want map[string][]string
	}{
		{func() {}, map[string][]string{"sandbox": {ready}, "init1": {running}}},
		{func() { f.exit(t, "init1", 0) }, map[string][]string{"sandbox": {ready}, "init1": {exited}, "init2": {running}}},
		{func() { f.exit(t, "init2", 0) }, map[string][]string{"sandbox": {ready}, "init1": {exited}, "init2": {exited}, "a": {running}, "b": {running}}},
		{func() {}, map[string][]string{"sandbox": {ready}, "init1": {exited}, "init2": {exited}, "a": {running}, "b": {running}}},
	}
	for i, s := range steps {
		s.do()
		f.sync(t, pod)
		if d := cmp.Diff(s.want, f.states(t)); d != "" {
			t.Fatalf("step %d (-want +got):\n%s", i, d)
		}
	}
	// Upstream's label and annotation keys, so either kubelet adopts the other's containers.
	f.rs.Lock()
	var a *critest.FakeContainer
	for _, c := range f.rs.Containers {
		if c.Metadata.Name == "a" {
			a = c
		}
	}
	f.rs.Unlock()
	wantLabels := map[string]string{"io.kubernetes.pod.name": "p", "io.kubernetes.pod.namespace": "ns",
		"io.kubernetes.pod.uid": "uid-1", "io.kubernetes.container.name": "a"}
	if d := cmp.Diff(wantLabels, a.Labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	if a.Annotations["io.kubernetes.container.restartCount"] != "0" || a.Annotations["io.kubernetes.container.hash"] == "" {
		t.Errorf("annotations: %v", a.Annotations)
	}
}

func TestRestartWithBackOffAndCrashLoop(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	f.sync(t, pod)
	f.exit(t, "a", 1)
	f.sync(t, pod) // first restart is immediate (back-off starts at the exit)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "a": {exited, running}}, f.states(t)); d != "" {
		t.Fatalf("after first exit (-want +got):\n%s", d)
	}
	f.exit(t, "a", 1)
	res := f.sync(t, pod) // now in back-off: nothing starts; GC keeps the newest two dead instances (state and lastState)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "a": {exited, exited}}, f.states(t)); d != "" {
		t.Fatalf("in back-off (-want +got):\n%s", d)
	}
	if res.Requeue <= 0 || res.Requeue > backoff.Initial+time.Second {
		t.Errorf("requeue = %v, want about the back-off", res.Requeue)
	}
	st := status.Compute(status.Input{Pod: pod, Runtime: res.Runtime, RuntimeName: "fake", Reasons: f.syncer.Reasons(pod.UID), Now: time.Now()})
	cs := st.ContainerStatuses[0]
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != status.CrashLoopBackOff || cs.RestartCount != 1 ||
		cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("status = %+v", cs)
	}
	if st.Phase != v1.PodRunning {
		t.Errorf("phase = %s, want Running", st.Phase)
	}
}

func TestNeverPolicyFinishes(t *testing.T) {
	for _, tc := range []struct {
		code  int32
		phase v1.PodPhase
	}{{0, v1.PodSucceeded}, {3, v1.PodFailed}} {
		f := newFixture(t)
		f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
		pod := testPod(v1.RestartPolicyNever, nil, ctr("a"))
		f.sync(t, pod)
		f.exit(t, "a", tc.code)
		res := f.sync(t, pod)
		if !res.Terminal {
			t.Fatalf("exit %d: not terminal", tc.code)
		}
		if d := cmp.Diff(map[string][]string{"sandbox": {notRdy}, "a": {exited}}, f.states(t)); d != "" {
			t.Fatalf("exit %d (-want +got):\n%s", tc.code, d)
		}
		st := status.Compute(status.Input{Pod: pod, Runtime: res.Runtime, RuntimeName: "fake", Terminal: true, Now: time.Now()})
		if st.Phase != tc.phase {
			t.Errorf("exit %d: phase %s, want %s", tc.code, st.Phase, tc.phase)
		}
	}
}

func TestImagePullAndNeverPull(t *testing.T) {
	f := newFixture(t)
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	f.sync(t, pod)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "a": {running}}, f.states(t)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	var pulled bool
	for _, c := range f.is.Called {
		pulled = pulled || c == "PullImage"
	}
	if !pulled {
		t.Errorf("image not pulled: %v", f.is.Called)
	}

	f2 := newFixture(t)
	c := ctr("a")
	c.ImagePullPolicy = v1.PullNever
	pod2 := testPod(v1.RestartPolicyAlways, nil, c)
	res := f2.sync(t, pod2)
	st := status.Compute(status.Input{Pod: pod2, Runtime: res.Runtime, Reasons: f2.syncer.Reasons(pod2.UID), Now: time.Now()})
	if w := st.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "ErrImageNeverPull" {
		t.Errorf("state = %+v", st.ContainerStatuses[0].State)
	}
}

func TestKillPodStopsEverything(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"), ctr("b"))
	res := f.sync(t, pod)
	if err := f.syncer.KillPod(context.Background(), pod, res.Runtime, 1); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string][]string{"sandbox": {notRdy}, "a": {exited}, "b": {exited}}, f.states(t)); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	rp, _ := f.syncer.RT.GetPod(context.Background(), pod.UID)
	if err := f.syncer.RemovePod(context.Background(), rp); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string][]string{}, f.states(t)); d != "" {
		t.Fatalf("after remove (-want +got):\n%s", d)
	}
	_ = types.UID("")
}

func TestSidecarKeptRunningAndStoppedWithPod(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	always := v1.ContainerRestartPolicyAlways
	side := ctr("side")
	side.RestartPolicy = &always
	pod := testPod(v1.RestartPolicyNever, []v1.Container{side, ctr("init")}, ctr("a"))
	f.sync(t, pod)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "side": {running}, "init": {running}}, f.states(t)); d != "" {
		t.Fatalf("sidecar then init (-want +got):\n%s", d)
	}
	f.exit(t, "init", 0)
	f.exit(t, "side", 1) // a sidecar that dies is restarted even under restartPolicy Never
	f.sync(t, pod)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "side": {exited, running}, "init": {exited}, "a": {running}}, f.states(t)); d != "" {
		t.Fatalf("app started, sidecar restarted (-want +got):\n%s", d)
	}
	f.exit(t, "a", 0)
	res := f.sync(t, pod)
	if !res.Terminal {
		t.Fatal("pod with finished app containers not terminal")
	}
	if d := cmp.Diff(map[string][]string{"sandbox": {notRdy}, "side": {exited, exited}, "init": {exited}, "a": {exited}}, f.states(t)); d != "" {
		t.Fatalf("sidecar stopped with the pod (-want +got):\n%s", d)
	}
}

// A sync that changes nothing reads the runtime once; a sync that starts a
// container reads it again so the status shows what it started.
func TestSyncReadsRuntimeAgainOnlyAfterActing(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	lists := func() int {
		n := 0
		for _, c := range f.rs.GetCalls() {
			if c == "ListContainers" {
				n++
			}
		}
		return n
	}
	steps := []struct {
		name      string
		wantLists int
	}{
		// read; the new sandbox's status alone; container started, read again
		{"first sync starts everything", 2},
		{"nothing to do", 1},
	}
	for _, s := range steps {
		before := lists()
		res := f.sync(t, pod)
		if got := lists() - before; got != s.wantLists {
			t.Errorf("%s: %d ListContainers calls, want %d", s.name, got, s.wantLists)
		}
		if l := res.Runtime.Latest("a"); l == nil || l.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("%s: result's runtime view lacks the running container: %+v", s.name, l)
		}
	}
}

// Volume failures are retried as upstream's volume manager does: 500 ms,
// doubling, and from 500 ms again once the volumes were set up.
func TestMountRetryBacksOff(t *testing.T) {
	s := &Syncer{}
	var got []time.Duration
	for range 3 {
		got = append(got, s.mountRetry("u"))
	}
	s.mountOK("u")
	got = append(got, s.mountRetry("u"))
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 500 * time.Millisecond}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("retries (-want +got):\n%s", d)
	}
}

// failingVolumes fails every Setup with err.
type failingVolumes struct{ err error }

func (v failingVolumes) Setup(context.Context, *v1.Pod) (map[string]containerconfig.HostVolume, error) {
	return nil, v.err
}
func (failingVolumes) Teardown(types.UID) error { return nil }

// A volume refused by the node authorizer right after the Pod appeared is
// retried soon and quietly while the authorizer catches up; a refusal past
// that window, or any other failure, is a FailedMount with back-off.
func TestAuthorizerCatchUpRetriesQuietly(t *testing.T) {
	forbidden := fmt.Errorf("MountVolume.SetUp failed for volume \"token\" : %w",
		apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts/token"}, "default", errors.New("no relationship found")))
	t0 := time.Now()
	type step struct {
		At      time.Duration
		Err     string
		Requeue time.Duration
		Events  int
	}
	steps := []step{
		{0, "forbidden", authorizerRetry, 0},
		{500 * time.Millisecond, "forbidden", authorizerRetry, 0},
		{time.Second, "forbidden", mountRetryInitial, 1},
		{1100 * time.Millisecond, "other", 2 * mountRetryInitial, 1},
	}
	f := newFixture(t)
	clk := clocktesting.NewFakeClock(t0)
	f.syncer.Clock = clk
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	var got []step
	for _, s := range steps {
		clk.SetTime(t0.Add(s.At))
		err := forbidden
		if s.Err == "other" {
			err = fmt.Errorf("MountVolume.SetUp failed: %w", errors.New("disk full"))
		}
		f.syncer.Volumes = failingVolumes{err}
		res := f.sync(t, pod)
		got = append(got, step{s.At, s.Err, res.Requeue, len(f.recorder.Events)})
		for len(f.recorder.Events) > 0 {
			<-f.recorder.Events
		}
	}
	if d := cmp.Diff(steps, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestRunAsNonRootRefusesRootImage: the fake image names no user, so it runs
// as root; runAsNonRoot then stops the container before CreateContainer, as
// upstream, with CreateContainerConfigError and a Failed Event.
func TestRunAsNonRootRefusesRootImage(t *testing.T) {
	f := newFixture(t)
	c := ctr("a")
	c.SecurityContext = &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}
	pod := testPod(v1.RestartPolicyAlways, nil, c)
	res := f.sync(t, pod)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}}, f.states(t)); d != "" {
		t.Errorf("runtime (-want +got):\n%s", d)
	}
	st := status.Compute(status.Input{Pod: pod, Runtime: res.Runtime, Reasons: f.syncer.Reasons(pod.UID), Now: time.Now()})
	want := &v1.ContainerStateWaiting{Reason: "CreateContainerConfigError",
		Message: `container has runAsNonRoot and image will run as root (pod: "p_ns(uid-1)", container: a)`}
	if d := cmp.Diff(want, st.ContainerStatuses[0].State.Waiting); d != "" {
		t.Errorf("waiting (-want +got):\n%s", d)
	}
	if !drained(f.recorder, "Warning Failed Error: "+want.Message) {
		t.Error("no Failed Event with the message")
	}

	// A non-root runAsUser satisfies it, and reaches the runtime.
	rec := &recordingRuntime{FakeRuntimeService: f.rs}
	f.syncer.RT.RuntimeService = rec
	c.SecurityContext.RunAsUser = ptr.To[int64](1000)
	pod = testPod(v1.RestartPolicyAlways, nil, c)
	f.sync(t, pod)
	if d := cmp.Diff(map[string][]string{"sandbox": {ready}, "a": {running}}, f.states(t)); d != "" {
		t.Fatalf("runtime (-want +got):\n%s", d)
	}
	if len(rec.created) != 1 || rec.created[0].GetLinux().GetSecurityContext().GetRunAsUser().GetValue() != 1000 {
		t.Errorf("CreateContainer configs = %v, want one with runAsUser 1000", rec.created)
	}
}

// recordingRuntime keeps the configs RunPodSandbox and CreateContainer were sent.
type recordingRuntime struct {
	*critest.FakeRuntimeService
	sandboxes []*runtimeapi.PodSandboxConfig
	created   []*runtimeapi.ContainerConfig
}

func (r *recordingRuntime) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	r.sandboxes = append(r.sandboxes, cfg)
	return r.FakeRuntimeService.RunPodSandbox(ctx, cfg, handler)
}

func (r *recordingRuntime) CreateContainer(ctx context.Context, sb string, cfg *runtimeapi.ContainerConfig, sbCfg *runtimeapi.PodSandboxConfig) (string, error) {
	r.created = append(r.created, cfg)
	return r.FakeRuntimeService.CreateContainer(ctx, sb, cfg, sbCfg)
}

// drained reads the recorder's queued Events and tells whether want was one.
func drained(rec *record.FakeRecorder, want string) bool {
	found := false
	for {
		select {
		case e := <-rec.Events:
			found = found || e == want
		default:
			return found
		}
	}
}

// TestUserNamespacePod: a Pod with hostUsers: false runs its sandbox and
// every container in one user namespace, the range persisted under its
// directory, kept across syncs and given back when the Pod is removed.
// Other Pods get the node's, as upstream sends it.
func TestUserNamespacePod(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	rec := &recordingRuntime{FakeRuntimeService: f.rs}
	f.syncer.RT.RuntimeService = rec
	ctx := context.Background()
	usernsOf := func() []*runtimeapi.UserNamespace {
		var out []*runtimeapi.UserNamespace
		for _, c := range rec.sandboxes {
			out = append(out, c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
		}
		for _, c := range rec.created {
			out = append(out, c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
		}
		return out
	}

	// hostUsers unset: the node's, for the sandbox and the container.
	node := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	f.sync(t, pod)
	if d := cmp.Diff([]*runtimeapi.UserNamespace{node, node}, usernsOf(), protocmp.Transform()); d != "" {
		t.Errorf("host users (-want +got):\n%s", d)
	}
	rp, _ := f.syncer.RT.GetPod(ctx, pod.UID)
	if err := f.syncer.KillPod(ctx, pod, rp, 1); err != nil {
		t.Fatal(err)
	}
	rp, _ = f.syncer.RT.GetPod(ctx, pod.UID)
	if err := f.syncer.RemovePod(ctx, rp); err != nil {
		t.Fatal(err)
	}

	rec.sandboxes, rec.created = nil, nil
	pod = testPod(v1.RestartPolicyAlways, nil, ctr("a"), ctr("b"))
	pod.Spec.HostUsers = ptr.To(false)
	f.sync(t, pod)
	got := usernsOf()
	if len(got) != 3 || got[0].GetMode() != runtimeapi.NamespaceMode_POD || len(got[0].GetUids()) != 1 || got[0].GetUids()[0].GetHostId() == 0 {
		t.Fatalf("sandbox and containers: %v, want the Pod's own user namespace", got)
	}
	for _, ns := range got[1:] {
		if d := cmp.Diff(got[0], ns, protocmp.Transform()); d != "" {
			t.Errorf("a container's differs from the sandbox's (-sandbox +container):\n%s", d)
		}
	}
	file := filepath.Join(f.syncer.Node.RootDir, "pods", string(pod.UID), "userns")
	first := got[0].GetUids()[0].GetHostId()
	want := fmt.Sprintf(`{"uidMappings":[{"hostId":%d,"containerId":0,"length":65536}],"gidMappings":[{"hostId":%d,"containerId":0,"length":65536}]}`, first, first)
	if b, err := os.ReadFile(file); err != nil || string(b) != want {
		t.Errorf("mappings file %q (%v), want %s", b, err, want)
	}

	// A restarted container, in the existing sandbox, gets the same.
	f.exit(t, "b", 1)
	rec.created = nil
	f.sync(t, pod)
	if len(rec.created) != 1 {
		t.Fatalf("%d containers created, want b again", len(rec.created))
	}
	if d := cmp.Diff(got[0], usernsOf()[1], protocmp.Transform()); d != "" {
		t.Errorf("restarted container (-want +got):\n%s", d)
	}

	rp, _ = f.syncer.RT.GetPod(ctx, pod.UID)
	if err := f.syncer.KillPod(ctx, pod, rp, 1); err != nil {
		t.Fatal(err)
	}
	rp, _ = f.syncer.RT.GetPod(ctx, pod.UID)
	if err := f.syncer.RemovePod(ctx, rp); err != nil {
		t.Fatal(err)
	}
	// Released: the next Pod gets the same range.
	next := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	next.UID = "uid-2"
	next.Spec.HostUsers = ptr.To(false)
	ns, err := f.syncer.UserNS.GetOrCreate(ctx, next, "")
	if err != nil {
		t.Fatal(err)
	}
	if ns.GetUids()[0].GetHostId() != first {
		t.Errorf("next Pod's first ID %d, want the released %d", ns.GetUids()[0].GetHostId(), first)
	}
}

// TestUserNamespaceUnsupported: on a runtime without user namespaces the
// sandbox is not made; upstream's message becomes the
// FailedCreatePodSandBox Event and the Pod stays Pending, retried later.
func TestUserNamespaceUnsupported(t *testing.T) {
	f := newFixture(t)
	f.syncer.UserNS = newUserNS(t, f.syncer.Node.RootDir, false)
	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	pod.Spec.HostUsers = ptr.To(false)
	res, err := f.syncer.SyncPod(context.Background(), pod)
	if err == nil {
		t.Error("no error")
	}
	if res.Requeue != backoff.Initial {
		t.Errorf("requeue after %v, want %v", res.Requeue, backoff.Initial)
	}
	if d := cmp.Diff(map[string][]string{}, f.states(t)); d != "" {
		t.Errorf("runtime (-want +got):\n%s", d)
	}
	if want := "Warning FailedCreatePodSandBox Failed to create pod sandbox: can't set `spec.hostUsers: false`, runtime does not support user namespaces"; !drained(f.recorder, want) {
		t.Errorf("no Event %q", want)
	}
	st := status.Compute(status.Input{Pod: pod, Runtime: res.Runtime, Reasons: f.syncer.Reasons(pod.UID), Now: time.Now()})
	if st.Phase != v1.PodPending {
		t.Errorf("phase %s, want Pending", st.Phase)
	}
}
