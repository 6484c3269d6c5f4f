package podworker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodesuite/nodesuite/kubelet/internal/admission"
	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
)

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startWorkers(t *testing.T, f *fixture, client *fake.Clientset, alloc v1.ResourceList) *Workers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workers{Syncer: f.syncer, Status: &status.Manager{Client: apiclienttest.New(client)}, Log: zap.NewNop(), Resync: 100 * time.Millisecond,
		Admission: func() admission.Node { return admission.Node{Allocatable: alloc, MaxPods: 10} }}
	w.Start(ctx)
	t.Cleanup(func() { cancel(); w.Wait() })
	return w
}

func TestWorkersRunRejectAndDelete(t *testing.T) {
	f := newFixture(t)
	f.is.SetFakeImages([]string{"registry.k8s.io/e2e-test-images/busybox:1.37.0-2"})
	client := fake.NewSimpleClientset()
	w := startWorkers(t, f, client, v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")})
	ctx := context.Background()

	pod := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	pod, _ = client.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{})
	w.Update(pod)
	get := func(name string) *v1.Pod {
		p, err := client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return p
	}
	poll(t, "Running", func() bool { p := get("p"); return p != nil && p.Status.Phase == v1.PodRunning })

	big := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	big.Name, big.UID = "big", "uid-big"
	big.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}
	big, _ = client.CoreV1().Pods("ns").Create(ctx, big, metav1.CreateOptions{})
	w.Update(big)
	poll(t, "rejected", func() bool { p := get("big"); return p != nil && p.Status.Phase == v1.PodFailed })
	if p := get("big"); p.Status.Reason != "OutOfcpu" || p.Status.Message != "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 0, capacity: 1000" {
		t.Errorf("rejection: %q %q", p.Status.Reason, p.Status.Message)
	}

	// Graceful delete: containers stop, then the kubelet deletes the object.
	pod = get("p")
	now := metav1.Now()
	g := int64(1)
	pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &now, &g
	w.Update(pod)
	poll(t, "deleted", func() bool { return get("p") == nil })
	w.Remove(pod.UID)
	poll(t, "runtime emptied", func() bool { return len(f.states(t)) == 0 })
}

// A status-only change (our own patch coming back through the informer)
// must not sync the Pod again; any other change must.
func TestUpdateSyncsOnlyOnSemanticChange(t *testing.T) {
	base := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
	now := metav1.Now()
	g := int64(1)
	tests := []struct {
		name   string
		change func(p *v1.Pod)
		want   bool
	}{
		{"status only", func(p *v1.Pod) { p.Status.Phase = v1.PodRunning; p.ResourceVersion = "7" }, false},
		{"spec", func(p *v1.Pod) { p.Spec.Containers[0].Image = "other" }, true},
		{"labels", func(p *v1.Pod) { p.Labels = map[string]string{"x": "y"} }, true},
		{"annotations", func(p *v1.Pod) { p.Annotations = map[string]string{"x": "y"} }, true},
		{"deletion", func(p *v1.Pod) { p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &g }, true},
		{"status with readiness gates", func(p *v1.Pod) {
			p.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: "x"}}
			p.Status.Conditions = []v1.PodCondition{{Type: "x", Status: v1.ConditionTrue}}
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := base.DeepCopy()
			if tt.name == "status with readiness gates" {
				old.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: "x"}}
			}
			ch := make(chan struct{}, 1)
			w := &Workers{pods: map[types.UID]*v1.Pod{old.UID: old}, workers: map[types.UID]chan struct{}{old.UID: ch}}
			next := old.DeepCopy()
			tt.change(next)
			w.Update(next)
			if got := len(ch) == 1; got != tt.want {
				t.Errorf("sync triggered = %v, want %v", got, tt.want)
			}
			if w.pods[old.UID] != next {
				t.Error("the newest Pod was not stored")
			}
		})
	}
}

// A runtime change notice wakes a sync only if the Pod's last sync read
// the runtime before the change; any other trigger always syncs.
func TestNoticeSeenByLastSyncWakesNoSync(t *testing.T) {
	read := time.Now()
	before, after := read.Add(-time.Second), read.Add(time.Second)
	const uid = types.UID("u")
	steps := []struct {
		name  string
		do    func(w *Workers)
		woken bool
		skip  bool
	}{
		{"change before the last read", func(w *Workers) { w.Changed(uid, before) }, true, true},
		{"change after the last read", func(w *Workers) { w.Changed(uid, after) }, true, false},
		{"old and new changes", func(w *Workers) { w.Changed(uid, after); w.Changed(uid, before) }, true, false},
		{"trigger (probe result)", func(w *Workers) { w.Trigger(uid) }, true, false},
		{"old change, then trigger", func(w *Workers) { w.Changed(uid, before); w.Trigger(uid) }, true, false},
		{"pod updated", func(w *Workers) {
			p := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
			p.UID, p.Labels = uid, map[string]string{"x": "y"}
			w.Update(p)
		}, true, false},
		{"resync timer after an old change", func(w *Workers) { w.Changed(uid, before) }, false, false},
	}
	var got, want []string
	for _, s := range steps {
		ch := make(chan struct{}, 1)
		p := testPod(v1.RestartPolicyAlways, nil, ctr("a"))
		p.UID = uid
		w := &Workers{pods: map[types.UID]*v1.Pod{uid: p}, workers: map[types.UID]chan struct{}{uid: ch},
			wakes: map[types.UID]*wake{uid: {readAt: read}}}
		s.do(w)
		if len(ch) != 1 {
			t.Fatalf("%s: worker not woken", s.name)
		}
		got = append(got, fmt.Sprintf("%s: skip=%v", s.name, w.seen(uid, s.woken)))
		want = append(want, fmt.Sprintf("%s: skip=%v", s.name, s.skip))
		// The wake-up took every notice, whether it syncs or not.
		if wk := w.wakes[uid]; !wk.notice.IsZero() || wk.forced {
			t.Errorf("%s: notices left after the wake-up was taken", s.name)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
