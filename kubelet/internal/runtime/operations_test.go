package runtime

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// Every call through the Runtime is counted once under upstream's
// operation_type, the list and status calls GetPod makes included.
func TestOperationsCounted(t *testing.T) {
	names := []string{"list_podsandbox", "list_containers", "podsandbox_status", "container_status", "image_status", "run_podsandbox"}
	read := func() map[string]float64 {
		m := map[string]float64{}
		for _, n := range names {
			m[n] = testutil.ToFloat64(Operations.WithLabelValues(n))
		}
		return m
	}
	rs, is := critest.NewFakeRuntimeService(), critest.NewFakeImageService()
	r := &Runtime{RuntimeService: countedRuntime{rs}, ImageManagerService: countedImages{is}}
	ctx := context.Background()
	before := read()
	if _, err := r.RunPodSandbox(ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Uid: "u", Namespace: "ns"},
		Labels: map[string]string{PodUIDLabel: "u"}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetPod(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: "x"}, false); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for n, v := range read() {
		got[n] = v - before[n]
	}
	want := map[string]float64{"run_podsandbox": 1, "list_podsandbox": 1, "list_containers": 1, "podsandbox_status": 1, "container_status": 0, "image_status": 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("counted calls (-want +got):\n%s", d)
	}
}
