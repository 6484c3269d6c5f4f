package integration

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/pleg"
	"github.com/nodesuite/nodesuite/kubelet/internal/podsource"
	"github.com/nodesuite/nodesuite/kubelet/internal/podworker"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
	"github.com/nodesuite/nodesuite/kubelet/internal/userns"
)

// kubelet is our pod workers, PLEG and status manager against the real
// runtime, with the fake clientset standing in for the API server.
type kubelet struct {
	rt      *runtime.Runtime
	workers *podworker.Workers
	syncer  *podworker.Syncer
	cancel  context.CancelFunc
}

func startKubelet(t *testing.T, s *stack, client *fake.Clientset) *kubelet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := runtime.Connect(ctx, "unix://"+s.Socket, "unix://"+s.Socket, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rt.Version(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	resolv := filepath.Join(s.Dir, "resolv.conf")
	write(t, resolv, "nameserver 10.88.66.1\n")
	rootDir := filepath.Join(s.Dir, "kubelet")
	um, err := userns.New(userns.Config{PodsDir: filepath.Join(rootDir, "pods"), MaxPods: 110, Runtime: &userns.Handlers{Status: rt.Status}})
	if err != nil {
		t.Fatal(err)
	}
	syncer := &podworker.Syncer{RT: rt, RuntimeName: v.RuntimeName, Recorder: record.NewFakeRecorder(10000), UserNS: um,
		HostIPs: []string{"10.88.66.1"}, Host: containerconfig.OSHost{}, Backoff: backoff.New(5 * time.Minute),
		ImageBackoff: backoff.New(5 * time.Minute), Log: log, Clock: clock.RealClock{},
		Node: containerconfig.Node{Name: "kubeletit", RootDir: rootDir, PodLogsDir: filepath.Join(s.Dir, "pod-logs"),
			CgroupDriver: "cgroupfs", CgroupRoot: "/" + CgroupRoot, ResolvConf: resolv, MemoryBytes: 8 << 30}}
	w := &podworker.Workers{Syncer: syncer, Status: &status.Manager{Client: apiclienttest.New(client)}, Log: log, Resync: 2 * time.Second}
	w.Start(ctx)
	for _, p := range listPods(t, client) {
		w.Update(p)
	}
	if err := w.Adopt(ctx, rt); err != nil {
		t.Fatal(err)
	}
	go (&pleg.PLEG{RT: rt.RuntimeService, Notify: w.Changed, Log: log}).Run(ctx)
	k := &kubelet{rt: rt, workers: w, syncer: syncer, cancel: cancel}
	t.Cleanup(k.stop)
	return k
}

func (k *kubelet) stop() {
	k.cancel()
	k.workers.Wait()
}

func listPods(t *testing.T, c *fake.Clientset) []*corev1.Pod {
	l, err := c.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	return out
}

func tinyPod(name string, policy corev1.RestartPolicy, args ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "it", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{RestartPolicy: policy, NodeName: "kubeletit", DNSPolicy: corev1.DNSDefault,
			Containers: []corev1.Container{{Name: "c", Image: TinyImage, Args: args, ImagePullPolicy: corev1.PullIfNotPresent,
				Env: []corev1.EnvVar{{Name: "WHO", Value: "world"}, {Name: "GREETING", Value: "hello $(WHO)"}}}}}}
	podsource.Defaults(p)
	g := int64(2)
	p.Spec.TerminationGracePeriodSeconds = &g
	return p
}

func create(t *testing.T, c *fake.Clientset, k *kubelet, p *corev1.Pod) {
	t.Helper()
	created, err := c.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k.workers.Update(created)
}

// waitFor polls the Pod in the fake API server until cond holds.
func waitFor(t *testing.T, c *fake.Clientset, name string, d time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(d)
	var p *corev1.Pod
	for time.Now().Before(deadline) {
		var err error
		p, err = c.CoreV1().Pods("it").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && cond(p) {
			return p
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %s not reached in %s; last status: %+v", name, what, d, p)
	return nil
}

func TestKubeletAgainstContainerd(t *testing.T) {
	s := startStack(t)
	client := fake.NewSimpleClientset()
	k := startKubelet(t, s, client)

	create(t, client, k, tinyPod("runs", corev1.RestartPolicyAlways, "run", "3600", "0"))
	create(t, client, k, tinyPod("completes", corev1.RestartPolicyNever, "run", "0", "0", "all done"))
	create(t, client, k, tinyPod("crashes", corev1.RestartPolicyAlways, "run", "0", "1"))
	withInit := tinyPod("init", corev1.RestartPolicyAlways, "run", "3600", "0")
	withInit.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: TinyImage, Args: []string{"run", "0", "0"},
		ImagePullPolicy: corev1.PullIfNotPresent, TerminationMessagePath: corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile}}
	create(t, client, k, withInit)

	running := waitFor(t, client, "runs", 90*time.Second, "Running and Ready", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
	})
	_, ipnet, _ := net.ParseCIDR(subnet)
	if ip := net.ParseIP(running.Status.PodIP); ip == nil || !ipnet.Contains(ip) {
		t.Errorf("podIP %q not in %s", running.Status.PodIP, subnet)
	}
	if cid := running.Status.ContainerStatuses[0].ContainerID; !strings.HasPrefix(cid, "containerd://") {
		t.Errorf("containerID %q", cid)
	}
	logPath := filepath.Join(s.Dir, "pod-logs", "it_runs_uid-runs", "c", "0.log")
	waitForFile(t, logPath, "greeting: hello world")

	done := waitFor(t, client, "completes", 60*time.Second, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if term := done.Status.ContainerStatuses[0].State.Terminated; term == nil || term.Reason != "Completed" || term.Message != "all done" {
		t.Errorf("completed container state: %+v", done.Status.ContainerStatuses[0].State)
	}
	waitFor(t, client, "crashes", 60*time.Second, "CrashLoopBackOff", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount >= 1 && cs.State.Waiting != nil && cs.State.Waiting.Reason == status.CrashLoopBackOff &&
			cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 1
	})
	waitFor(t, client, "init", 60*time.Second, "initialized and Running", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodRunning && len(p.Status.InitContainerStatuses) == 1 &&
			p.Status.InitContainerStatuses[0].State.Terminated != nil && p.Status.InitContainerStatuses[0].State.Terminated.ExitCode == 0
	})

	// Restart: a new kubelet adopts the running Pods without restarting a container.
	before := containerIDs(t, k.rt)
	k.stop()
	k2 := startKubelet(t, s, client)
	time.Sleep(5 * time.Second) // several syncs and relists
	after := containerIDs(t, k2.rt)
	for _, pod := range []string{"runs", "init"} {
		if before[pod] != after[pod] {
			t.Errorf("%s: running containers changed across a kubelet restart: %v -> %v", pod, before[pod], after[pod])
		}
	}

	// Graceful deletion: containers stop, then the kubelet deletes the object.
	p, err := client.CoreV1().Pods("it").Get(context.Background(), "runs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	g := int64(2)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &g
	if _, err := client.CoreV1().Pods("it").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k2.workers.Update(p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.CoreV1().Pods("it").Get(context.Background(), "runs", metav1.GetOptions{})
		if err != nil {
			break // deleted by the kubelet once nothing ran
		}
		if time.Now().After(deadline) {
			t.Fatal("pod not deleted by the kubelet after its containers stopped")
		}
		time.Sleep(200 * time.Millisecond)
	}
	k2.workers.Remove(p.UID)
	waitGone(t, k2.rt, p.UID)

	// Tear down what is left, as the API server's deletions would.
	for _, name := range []string{"completes", "crashes", "init"} {
		k2.workers.Remove(types.UID("uid-" + name))
	}
	for _, name := range []string{"completes", "crashes", "init"} {
		waitGone(t, k2.rt, types.UID("uid-"+name))
	}
}

func containerIDs(t *testing.T, rt *runtime.Runtime) map[string]string {
	t.Helper()
	pods, err := rt.ListPods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pods {
		var ids []string
		for _, c := range p.Containers {
			if c.Status.State.String() == "CONTAINER_RUNNING" {
				ids = append(ids, c.Status.Id)
			}
		}
		out[p.Name] = strings.Join(ids, ",")
	}
	return out
}

func waitGone(t *testing.T, rt *runtime.Runtime, uid types.UID) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		rp, err := rt.GetPod(context.Background(), uid)
		if err == nil && len(rp.Sandboxes) == 0 && len(rp.Containers) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Errorf("runtime still holds pod %s", uid)
}

func waitForFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Errorf("%s: want %q, have %q", path, want, b)
}
