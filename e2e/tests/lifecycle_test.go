package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// deletion is what a watch saw of a Pod from its delete call to its removal.
type deletion struct {
	elapsed time.Duration
	// last is the final status the kubelet reported before the Pod went away.
	last *v1.Pod
}

// deleteAndWatch deletes the Pod (with grace, when not nil) and follows it
// with a watch until it is gone, so the final container states are seen.
func deleteAndWatch(t *testing.T, f *framework.Framework, name string, grace *int64, timeout time.Duration) deletion {
	t.Helper()
	p, err := f.Client.CoreV1().Pods(f.Namespace).Get(f.Ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.Ctx, timeout)
	defer cancel()
	w, err := f.Client.CoreV1().Pods(f.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: p.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	if err := f.Client.CoreV1().Pods(f.Namespace).Delete(f.Ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace}); err != nil {
		t.Fatal(err)
	}
	last := p
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("pod %s: watch closed before the pod was deleted\n%s", name, f.DescribePod(name))
			}
			switch ev.Type {
			case watch.Deleted:
				return deletion{elapsed: time.Since(start), last: last}
			case watch.Modified:
				if np, ok := ev.Object.(*v1.Pod); ok {
					last = np
				}
			case watch.Error:
				t.Fatalf("pod %s: watch error: %v", name, ev.Object)
			}
		case <-ctx.Done():
			t.Fatalf("pod %s: still present %s after delete\n%s", name, timeout, f.DescribePod(name))
		}
	}
}

func TestGracefulDelete(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	t.Run("preStop runs before SIGTERM", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		const preStopSleep = 6 * time.Second
		// On SIGTERM the container reports what preStop left in the shared
		// emptyDir as its termination message, then exits.
		pod := framework.BusyboxPod("prestop", v1.RestartPolicyAlways,
			`trap 'cat /data/prestop > /dev/termination-log 2>&1; exit 0' TERM; while true; do sleep 1; done`)
		pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
		pod.Spec.Containers[0].Lifecycle = &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{
			Command: []string{"sh", "-c", fmt.Sprintf("echo prestop-ran > /data/prestop; sleep %d", int(preStopSleep.Seconds()))},
		}}}
		withEmptyDir(&pod.Spec, "data", "/data")
		f.CreatePod(pod)
		f.WaitForPodRunningReady("prestop")
		d := deleteAndWatch(t, f, "prestop", nil, 2*time.Minute)
		t.Logf("pod gone %s after delete", d.elapsed)
		got, ok := framework.ContainerStatus(d.last, "c")
		if !ok || got.State.Terminated == nil {
			t.Fatalf("last status before deletion has no terminated container: %+v", d.last.Status)
		}
		want := v1.ContainerStateTerminated{ExitCode: 0, Message: "prestop-ran\n"}
		gotT := v1.ContainerStateTerminated{ExitCode: got.State.Terminated.ExitCode, Message: got.State.Terminated.Message}
		if diff := cmp.Diff(want, gotT); diff != "" {
			t.Errorf("termination (-want +got):\n%s", diff)
		}
		if d.elapsed < preStopSleep {
			t.Errorf("pod gone %s after delete, sooner than the preStop hook's %s", d.elapsed, preStopSleep)
		}
		if d.elapsed > 30*time.Second {
			t.Errorf("pod gone %s after delete, though it exits on SIGTERM right after the %s preStop hook", d.elapsed, preStopSleep)
		}
	})

	t.Run("the delete's grace period ends in SIGKILL", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		const grace = 6
		// PID 1 of a PID namespace without a handler never sees SIGTERM, so
		// only the SIGKILL at the end of the grace period stops it.
		pod := framework.BusyboxPod("grace", v1.RestartPolicyAlways, "while true; do sleep 1; done")
		pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](600) // the delete's shorter period must win
		f.CreatePod(pod)
		f.WaitForPodRunningReady("grace")
		d := deleteAndWatch(t, f, "grace", ptr.To[int64](grace), 2*time.Minute)
		t.Logf("pod gone %s after delete", d.elapsed)
		const slack = 30 * time.Second
		if d.elapsed < grace*time.Second {
			t.Errorf("pod gone %s after delete, sooner than its %ds grace period", d.elapsed, grace)
		}
		if d.elapsed > grace*time.Second+slack {
			t.Errorf("pod gone %s after delete, later than its %ds grace period + %s", d.elapsed, grace, slack)
		}
		if s, ok := framework.ContainerStatus(d.last, "c"); !ok || s.State.Terminated == nil || s.State.Terminated.ExitCode != 137 {
			t.Errorf("last container state %+v, want terminated by SIGKILL (exit 137)", s.State)
		}
	})
}
