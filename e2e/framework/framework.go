package framework

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// Images the suite runs, under their upstream names (served locally on the
// local cluster).
const (
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
)

// Bounded waits. Generous against a 2-core CI machine; a healthy node beats them by far.
const (
	Poll             = 500 * time.Millisecond
	PodStartTimeout  = 3 * time.Minute
	PodChangeTimeout = 2 * time.Minute
)

// Framework is one test's view of the cluster: a client and its own namespace.
type Framework struct {
	T         *testing.T
	Ctx       context.Context
	Config    *rest.Config
	Client    kubernetes.Interface
	Namespace string
}

// New connects to the cluster (or skips/fails the test, see Decide), creates
// a namespace generateName e2e- for the test and deletes it when the test ends.
func New(t *testing.T) *Framework {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e test: skipped in -short mode")
	}
	c, explicit, err := sharedCluster()
	switch Decide(explicit, err) {
	case Skip:
		t.Skipf("no cluster: %v (set KUBECONFIG to run the e2e suite against a cluster)", err)
	case Fail:
		t.Fatalf("KUBECONFIG is set but the cluster does not answer: %v", err)
	}
	ctx, cancel := contextFor(t)
	t.Cleanup(cancel)
	f := &Framework{T: t, Ctx: ctx, Config: c.Config, Client: c.Client}

	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: "e2e-",
		Labels: map[string]string{
			"e2e.nodesuite.io/test": labelValue(t.Name()),
			// hostNetwork client Pods need the privileged level where
			// Pod Security admission is enforced.
			"pod-security.kubernetes.io/enforce": "privileged",
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	f.Namespace = ns.Name
	t.Logf("namespace %s", ns.Name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("events in %s:\n%s", ns.Name, f.events(""))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		bg := metav1.DeletePropagationBackground
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	// The ServiceAccount admission plugin rejects Pods until the
	// controller-manager has created the namespace's default ServiceAccount.
	err = wait.PollUntilContextTimeout(ctx, Poll, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("default ServiceAccount in %s: %v", ns.Name, err)
	}
	return f
}

// Sub is the Framework for a subtest: same cluster and namespace, but
// failures go to the subtest (FailNow must run on the test's own goroutine).
func (f *Framework) Sub(t *testing.T) *Framework {
	c := *f
	c.T = t
	return &c
}

func labelValue(s string) string {
	r := strings.NewReplacer("/", "_", " ", "_")
	s = r.Replace(s)
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "_-.")
}

// CreatePod creates the Pod in the test's namespace.
func (f *Framework) CreatePod(pod *v1.Pod) *v1.Pod {
	f.T.Helper()
	p, err := f.Client.CoreV1().Pods(f.Namespace).Create(f.Ctx, pod, metav1.CreateOptions{})
	if err != nil {
		f.T.Fatalf("create pod %s: %v", pod.Name, err)
	}
	return p
}

// WaitForPod polls the Pod until cond holds, failing the test with what was
// waited for and the Pod's status and events when it does not in time.
// cond returning an error stops the wait at once (e.g. a state that can no
// longer change to the wanted one).
func (f *Framework) WaitForPod(name, what string, timeout time.Duration, cond func(*v1.Pod) (bool, error)) *v1.Pod {
	f.T.Helper()
	var last *v1.Pod
	err := wait.PollUntilContextTimeout(f.Ctx, Poll, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := f.Client.CoreV1().Pods(f.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil // transient API errors are retried until the deadline
		}
		last = p
		return cond(p)
	})
	if err != nil {
		f.T.Fatalf("pod %s: waiting for %s: %v\n%s", name, what, err, f.DescribePod(name))
	}
	return last
}

// WatchPod is WaitForPod driven by a watch: cond sees every version of the
// Pod the API server stores, so short-lived states (a CrashLoopBackOff the
// kubelet reports for a moment before restarting) are not missed between polls.
func (f *Framework) WatchPod(name, what string, timeout time.Duration, cond func(*v1.Pod) (bool, error)) *v1.Pod {
	f.T.Helper()
	ctx, cancel := context.WithTimeout(f.Ctx, timeout)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return f.Client.CoreV1().Pods(f.Namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return f.Client.CoreV1().Pods(f.Namespace).Watch(ctx, o)
		},
	}
	ev, err := watchtools.UntilWithSync(ctx, lw, &v1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*v1.Pod)
		if !ok || ev.Type == watch.Deleted {
			return false, nil
		}
		return cond(p)
	})
	if err != nil {
		f.T.Fatalf("pod %s: watching for %s: %v\n%s", name, what, err, f.DescribePod(name))
	}
	return ev.Object.(*v1.Pod)
}

// WaitForPodRunningReady waits until the Pod runs and is Ready.
func (f *Framework) WaitForPodRunningReady(name string) *v1.Pod {
	f.T.Helper()
	return f.WaitForPod(name, "Running and Ready", PodStartTimeout, func(p *v1.Pod) (bool, error) {
		if err := terminal(p); err != nil {
			return false, err
		}
		return p.Status.Phase == v1.PodRunning && PodReady(p), nil
	})
}

// WaitForPodPhase waits for a terminal or running phase.
func (f *Framework) WaitForPodPhase(name string, phase v1.PodPhase) *v1.Pod {
	f.T.Helper()
	return f.WaitForPod(name, "phase "+string(phase), PodStartTimeout, func(p *v1.Pod) (bool, error) {
		if p.Status.Phase == phase {
			return true, nil
		}
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			return false, fmt.Errorf("pod reached terminal phase %s", p.Status.Phase)
		}
		return false, nil
	})
}

// WaitForPodGone waits until the Pod object no longer exists.
func (f *Framework) WaitForPodGone(name string, timeout time.Duration) {
	f.T.Helper()
	err := wait.PollUntilContextTimeout(f.Ctx, Poll, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().Pods(f.Namespace).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		f.T.Fatalf("pod %s: waiting for deletion: %v\n%s", name, err, f.DescribePod(name))
	}
}

func terminal(p *v1.Pod) error {
	if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return fmt.Errorf("pod reached terminal phase %s", p.Status.Phase)
	}
	return nil
}

// PodReady reports the Pod's Ready condition.
func PodReady(p *v1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// ContainerStatus returns the named (regular or init) container's status.
func ContainerStatus(p *v1.Pod, name string) (v1.ContainerStatus, bool) {
	for _, list := range [][]v1.ContainerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses} {
		for _, s := range list {
			if s.Name == name {
				return s, true
			}
		}
	}
	return v1.ContainerStatus{}, false
}

// Logs returns a container's log; previous selects the last terminated instance.
func (f *Framework) Logs(pod, container string, previous bool) (string, error) {
	b, err := f.Client.CoreV1().Pods(f.Namespace).GetLogs(pod, &v1.PodLogOptions{Container: container, Previous: previous}).DoRaw(f.Ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s (previous=%t): %w", pod, container, previous, err)
	}
	return string(b), nil
}

// DescribePod renders the Pod's status and events for failure messages.
func (f *Framework) DescribePod(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var b strings.Builder
	p, err := f.Client.CoreV1().Pods(f.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		fmt.Fprintf(&b, "  (get pod: %v)\n", err)
	} else {
		fmt.Fprintf(&b, "  phase=%s reason=%q message=%q node=%s podIP=%s deleting=%t\n", p.Status.Phase, p.Status.Reason, p.Status.Message, p.Spec.NodeName, p.Status.PodIP, p.DeletionTimestamp != nil)
		for _, c := range p.Status.Conditions {
			fmt.Fprintf(&b, "  condition %s=%s reason=%q message=%q\n", c.Type, c.Status, c.Reason, c.Message)
		}
		for _, s := range append(append([]v1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			started := s.Started != nil && *s.Started
			fmt.Fprintf(&b, "  container %s: ready=%t started=%t restarts=%d state=%s last=%s\n", s.Name, s.Ready, started, s.RestartCount, stateString(s.State), stateString(s.LastTerminationState))
		}
	}
	b.WriteString("  events:\n")
	b.WriteString(f.events(name))
	return b.String()
}

func stateString(s v1.ContainerState) string {
	switch {
	case s.Waiting != nil:
		return fmt.Sprintf("waiting(%s: %s)", s.Waiting.Reason, s.Waiting.Message)
	case s.Running != nil:
		return fmt.Sprintf("running(since %s)", s.Running.StartedAt.Format(time.RFC3339))
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(exit %d, %s: %s)", s.Terminated.ExitCode, s.Terminated.Reason, s.Terminated.Message)
	}
	return "none"
}

// events lists the namespace's events, or only those about the named object.
func (f *Framework) events(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	opts := metav1.ListOptions{}
	if name != "" {
		opts.FieldSelector = "involvedObject.name=" + name
	}
	list, err := f.Client.CoreV1().Events(f.Namespace).List(ctx, opts)
	if err != nil {
		return fmt.Sprintf("    (list events: %v)\n", err)
	}
	evs := list.Items
	sort.SliceStable(evs, func(i, j int) bool { return eventTime(evs[i]).Before(eventTime(evs[j])) })
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "    %s %s %s/%s %s: %s (x%d)\n", eventTime(e).Format("15:04:05"), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message, max(e.Count, 1))
	}
	if len(evs) == 0 {
		b.WriteString("    (none)\n")
	}
	return b.String()
}

func eventTime(e v1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
