package kubeletcompat

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
)

// restartPods is how many Pods run while the kubelet is restarted.
const restartPods = 30

// observeAfterSwap is how long every Pod's status is watched after a
// swapped-in kubelet is Ready: long enough for several relists and a full
// pod-worker sync of every Pod, when a kubelet that does not adopt would
// kill and restart containers.
const observeAfterSwap = 30 * time.Second

// restartPod is one of the Pods kept running across kubelet restarts: most
// are a single sleeper; every tenth has an init container and two app
// containers, every tenth (offset by 5) a sidecar (restartable init
// container) beside its app container.
func restartPod(i int) *v1.Pod {
	sleeper := func(name string) v1.Container {
		return framework.BusyboxContainer(name, "trap 'exit 0' TERM; while true; do sleep 1; done")
	}
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("keep-%02d", i)},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []v1.Container{sleeper("app")},
		},
	}
	switch i % 10 {
	case 0:
		p.Spec.InitContainers = []v1.Container{framework.BusyboxContainer("init", "echo init done")}
		p.Spec.Containers = append(p.Spec.Containers, sleeper("second"))
	case 5:
		sc := sleeper("sidecar")
		sc.RestartPolicy = ptr.To(v1.ContainerRestartPolicyAlways)
		p.Spec.InitContainers = []v1.Container{sc}
	}
	return p
}

// TestKubeletRestartKeepsContainers runs 30 Pods, then (a) restarts the
// node's kubelet and (b) switches it to the other kubelet and back; after
// each swap, for observeAfterSwap, every version of every Pod the API
// server stores must have the status from before, apart from heartbeat
// times: same container IDs, restart counts, start times, conditions.
func TestKubeletRestartKeepsContainers(t *testing.T) {
	n := localNode(t)
	f := newFW(t)
	first := n.current(t)
	other := cluster.Upstream
	if first == cluster.Upstream {
		other = cluster.Ours
	}

	for i := range restartPods {
		f.CreatePod(restartPod(i))
	}
	for i := range restartPods {
		f.WaitForPodRunningReady(restartPod(i).Name)
	}
	before := f.snapshot()

	steps := []struct {
		name string
		to   cluster.Choice
	}{
		{"restart-" + string(first), first},
		{"switch-to-" + string(other), other},
		{"switch-back-to-" + string(first), first},
	}
	// Every step runs even when one finds a changed status: the node still
	// works, and the next swap (ours -> upstream) is a check of its own.
	defer func() {
		// Leave the node with the kubelet it had, for the next user.
		if n.current(t) != first {
			n.swap(t, f.Ctx, f.Client, first)
		}
	}()
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.to == cluster.Ours {
				if why := n.oursUnavailable(); why != "" {
					t.Skip(why)
				}
			}
			sf := &fw{f.Sub(t)}
			rv := sf.listRV()
			n.swap(t, sf.Ctx, sf.Client, s.to)
			sf.expectUnchanged(before, rv, observeAfterSwap)
		})
	}
}

type podStatuses map[string]v1.PodStatus

// snapshot is every Pod's status in the test's namespace, heartbeats removed.
func (f *fw) snapshot() podStatuses {
	f.T.Helper()
	list, err := f.Client.CoreV1().Pods(f.Namespace).List(f.Ctx, metav1.ListOptions{})
	if err != nil {
		f.T.Fatal(err)
	}
	out := podStatuses{}
	for _, p := range list.Items {
		out[p.Name] = HeartbeatFree(p.Status)
	}
	return out
}

func (f *fw) listRV() string {
	f.T.Helper()
	list, err := f.Client.CoreV1().Pods(f.Namespace).List(f.Ctx, metav1.ListOptions{})
	if err != nil {
		f.T.Fatal(err)
	}
	return list.ResourceVersion
}

// expectUnchanged watches the namespace's Pods from resource version rv
// (before the swap) until observe has passed, and fails on the first
// version of each Pod whose status differs from before; then compares a
// final list as well.
func (f *fw) expectUnchanged(before podStatuses, rv string, observe time.Duration) {
	f.T.Helper()
	ctx, cancel := context.WithTimeout(f.Ctx, observe)
	defer cancel()
	w, err := f.Client.CoreV1().Pods(f.Namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		f.T.Fatalf("watch pods: %v", err)
	}
	defer w.Stop()
	reported := map[string]bool{}
	updates := 0
	for ev := range w.ResultChan() {
		p, ok := ev.Object.(*v1.Pod)
		if !ok {
			continue // the watch ended with an error object; the final list still checks
		}
		updates++
		if ev.Type == watch.Deleted {
			f.T.Errorf("pod %s deleted during the swap", p.Name)
			continue
		}
		if diff := cmp.Diff(before[p.Name], HeartbeatFree(p.Status)); diff != "" && !reported[p.Name] {
			reported[p.Name] = true
			f.T.Errorf("pod %s: status changed after the kubelet swap (-before +after):\n%s", p.Name, diff)
		}
	}
	after := f.snapshot()
	var names []string
	for name := range before {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if reported[name] {
			continue
		}
		if diff := cmp.Diff(before[name], after[name]); diff != "" {
			f.T.Errorf("pod %s: status changed after the kubelet swap (-before +after):\n%s", name, diff)
		}
	}
	f.T.Logf("%d Pod updates seen in %s after the swap; %d of %d Pods changed", updates, observe, len(reported), len(before))
}

// fw adds the compat tests' helpers to the e2e framework.
type fw struct{ *framework.Framework }

// newFW is framework.New for these tests.
func newFW(t *testing.T) *fw { return &fw{framework.New(t)} }

// pollUntil polls cond every framework.Poll until timeout.
func (f *fw) pollUntil(timeout time.Duration, cond func(context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(f.Ctx, framework.Poll, timeout, true, cond)
}
