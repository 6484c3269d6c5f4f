package gc

import (
	"context"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

type rec struct{ removed []string }

func (r *rec) RemoveContainer(_ context.Context, id string) error {
	r.removed = append(r.removed, "c:"+id)
	return nil
}

func (r *rec) RemovePodSandbox(_ context.Context, id string) error {
	r.removed = append(r.removed, "s:"+id)
	return nil
}

func ctr(id, name, sb string, st runtimeapi.ContainerState) *runtime.Container {
	return &runtime.Container{Name: name, SandboxID: sb, Status: &runtimeapi.ContainerStatus{Id: id, State: st}}
}

func TestPrune(t *testing.T) {
	ex, run := runtimeapi.ContainerState_CONTAINER_EXITED, runtimeapi.ContainerState_CONTAINER_RUNNING
	rp := &runtime.Pod{
		Sandboxes: []*runtimeapi.PodSandboxStatus{{Id: "sb3", State: runtimeapi.PodSandboxState_SANDBOX_READY},
			{Id: "sb2", State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}, {Id: "sb1", State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}},
		Containers: []*runtime.Container{ctr("a4", "a", "sb3", run), ctr("a3", "a", "sb3", ex), ctr("a2", "a", "sb2", ex),
			ctr("b2", "b", "sb3", ex), ctr("b1", "b", "sb1", ex)},
	}
	r := &rec{}
	n, err := Prune(context.Background(), r, rp)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(r.removed)
	// a: running a4 and the exited a3 before it stay, a2 goes; b: the
	// exited b2 (state) and b1 (lastState) both stay, so sb1 does too.
	if n != len(r.removed) {
		t.Errorf("Prune says it removed %d, the runtime was asked %d times", n, len(r.removed))
	}
	if d := cmp.Diff([]string{"c:a2", "s:sb2"}, r.removed); d != "" {
		t.Errorf("removed (-want +got):\n%s", d)
	}
}
