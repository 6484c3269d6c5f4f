package kubeletcompat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
)

// crashRestarts is how many restarts make a crash-looping container settled.
const crashRestarts = 2

// statusCase is one Pod of the comparison and when its status is settled:
// the point after which, timing aside, it no longer changes.
type statusCase struct {
	pod     func(node string) *v1.Pod
	settled func(*v1.Pod) bool
	// restartsAtLeast caps restart counts in the comparison (crash loops).
	restartsAtLeast int32
}

func terminalPhase(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

// waitingIn is true when every named container waits with one of reasons.
func waitingIn(p *v1.Pod, reasons ...string) bool {
	statuses := append(append([]v1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		if s.State.Waiting != nil {
			for _, r := range reasons {
				if s.State.Waiting.Reason == r {
					return true
				}
			}
		}
	}
	return false
}

func crashLooping(p *v1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.RestartCount >= crashRestarts && s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" {
			return true
		}
	}
	return false
}

func busybox(name, script string) v1.Container { return framework.BusyboxContainer(name, script) }

func basePod(name string, restart v1.RestartPolicy, cs ...v1.Container) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    cs,
		},
	}
}

// statusCases are the Pods whose settled status and Events both kubelets
// must report alike.
var statusCases = map[string]statusCase{
	"completes": {
		pod:     func(string) *v1.Pod { return basePod("completes", v1.RestartPolicyNever, busybox("c", "echo done")) },
		settled: terminalPhase,
	},
	"fails": {
		pod: func(string) *v1.Pod {
			c := busybox("c", "echo 'last words' >/dev/termination-log; exit 3")
			return basePod("fails", v1.RestartPolicyNever, c)
		},
		settled: terminalPhase,
	},
	"fails-log-message": {
		pod: func(string) *v1.Pod {
			c := busybox("c", "echo from the log; exit 4")
			c.TerminationMessagePolicy = v1.TerminationMessageFallbackToLogsOnError
			return basePod("fails-log-message", v1.RestartPolicyOnFailure, c)
		},
		settled:         crashLooping,
		restartsAtLeast: crashRestarts,
	},
	"crash-loops": {
		pod:             func(string) *v1.Pod { return basePod("crash-loops", v1.RestartPolicyAlways, busybox("c", "exit 1")) },
		settled:         crashLooping,
		restartsAtLeast: crashRestarts,
	},
	"init-containers": {
		pod: func(string) *v1.Pod {
			p := basePod("init-containers", v1.RestartPolicyNever, busybox("c", "echo app"))
			p.Spec.InitContainers = []v1.Container{busybox("init-1", "echo one"), busybox("init-2", "echo two")}
			return p
		},
		settled: terminalPhase,
	},
	"init-fails": {
		pod: func(string) *v1.Pod {
			p := basePod("init-fails", v1.RestartPolicyNever, busybox("c", "echo never"))
			p.Spec.InitContainers = []v1.Container{busybox("init", "exit 2")}
			return p
		},
		settled: terminalPhase,
	},
	"sidecar": {
		pod: func(string) *v1.Pod {
			p := basePod("sidecar", v1.RestartPolicyNever, busybox("c", "sleep 2; echo app done"))
			// The trap runs as soon as TERM arrives (wait is interrupted; a
			// foreground sleep is not): with a grace period of 1 s, a loaded
			// machine otherwise lets SIGKILL win on either kubelet (137/Error).
			sc := busybox("sidecar", "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done")
			sc.RestartPolicy = ptr.To(v1.ContainerRestartPolicyAlways)
			p.Spec.InitContainers = []v1.Container{sc}
			return p
		},
		settled: terminalPhase,
	},
	"multi-container": {
		pod: func(string) *v1.Pod {
			return basePod("multi-container", v1.RestartPolicyNever, busybox("ok", "exit 0"), busybox("bad", "sleep 1; exit 7"))
		},
		settled: terminalPhase,
	},
	"bad-image": {
		pod: func(string) *v1.Pod {
			c := busybox("c", "true")
			// A name under registry.k8s.io: the node's mirror on
			// 127.0.0.1 answers for it (and has no such image), so the
			// pull fails without anything leaving the host.
			c.Image = "registry.k8s.io/e2e-test-images/nodesuite-no-such-image:1.0"
			return basePod("bad-image", v1.RestartPolicyAlways, c)
		},
		settled: func(p *v1.Pod) bool { return waitingIn(p, "ImagePullBackOff") },
	},
	"missing-configmap-key": {
		pod: func(string) *v1.Pod {
			c := busybox("c", "true")
			c.Env = []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
				LocalObjectReference: v1.LocalObjectReference{Name: "nodesuite-missing"}, Key: "k",
			}}}}
			return basePod("missing-configmap-key", v1.RestartPolicyAlways, c)
		},
		settled: func(p *v1.Pod) bool { return waitingIn(p, "CreateContainerConfigError") },
	},
	// The image runs as root: runAsNonRoot stops the container before it is
	// created (upstream's verifyRunAsNonRoot message).
	"run-as-non-root": {
		pod: func(string) *v1.Pod {
			c := busybox("c", "true")
			c.SecurityContext = &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}
			return basePod("run-as-non-root", v1.RestartPolicyAlways, c)
		},
		settled: func(p *v1.Pod) bool { return waitingIn(p, "CreateContainerConfigError") },
	},
	// The container exits with its own seccomp mode: 2 (filter) under the
	// runtime's default profile, so a kubelet that dropped the Pod's
	// seccompProfile would report exit 0 and Completed instead.
	"seccomp-runtime-default": {
		pod: func(string) *v1.Pod {
			p := basePod("seccomp-runtime-default", v1.RestartPolicyNever,
				busybox("c", "exit $(grep '^Seccomp:' /proc/self/status | cut -f2)"))
			p.Spec.SecurityContext = &v1.PodSecurityContext{SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault}}
			return p
		},
		settled: terminalPhase,
	},
	// hostUsers: false. The container exits 0 only in a user namespace
	// that maps its root away from the host's (uid_map "0 <host ID, not 0>
	// ..."); in the host's it would exit 1.
	"user-namespace": {
		pod: func(string) *v1.Pod {
			p := basePod("user-namespace", v1.RestartPolicyNever,
				busybox("c", `exit $(awk '$1==0 && $2!=0 {print 0; exit} {print 1; exit}' /proc/self/uid_map)`))
			p.Spec.HostUsers = ptr.To(false)
			return p
		},
		settled: terminalPhase,
	},
	// The sandbox's hostname: the FQDN with setHostnameAsFQDN, and
	// hostnameOverride as given. Exit 0 only when the kernel's name is right.
	"hostname-fqdn": {
		pod: func(string) *v1.Pod {
			p := basePod("hostname-fqdn", v1.RestartPolicyNever, busybox("c", `case "$(hostname)" in h.s.*.svc.*) exit 0;; esac; exit 1`))
			p.Spec.Hostname, p.Spec.Subdomain, p.Spec.SetHostnameAsFQDN = "h", "s", ptr.To(true)
			return p
		},
		settled: terminalPhase,
	},
	"hostname-override": {
		pod: func(string) *v1.Pod {
			p := basePod("hostname-override", v1.RestartPolicyNever, busybox("c", `test "$(hostname)" = node-a.example`))
			p.Spec.HostnameOverride = ptr.To("node-a.example")
			return p
		},
		settled: terminalPhase,
	},
	// Admission: a sysctl that is not namespaced-safe and not allowed by
	// allowedUnsafeSysctls (SysctlForbidden), and an AppArmor profile on a
	// host without AppArmor (reason AppArmor). Bound straight to the node.
	"unsafe-sysctl": {
		pod: func(node string) *v1.Pod {
			p := basePod("unsafe-sysctl", v1.RestartPolicyNever, busybox("c", "true"))
			p.Spec.NodeName = node
			p.Spec.SecurityContext = &v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "kernel.msgmax", Value: "65536"}}}
			return p
		},
		settled: terminalPhase,
	},
	"apparmor": {
		pod: func(node string) *v1.Pod {
			p := basePod("apparmor", v1.RestartPolicyNever, busybox("c", "true"))
			p.Spec.NodeName = node
			p.Spec.SecurityContext = &v1.PodSecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}}
			return p
		},
		settled: terminalPhase,
	},
	// Bound straight to the node (no scheduler), asking for more CPU than
	// any node of this kind has: the API accepts it, the kubelet's
	// admission must reject it.
	"does-not-fit": {
		pod: func(node string) *v1.Pod {
			c := busybox("c", "true")
			c.Resources.Requests = v1.ResourceList{v1.ResourceCPU: resource.MustParse("1000")}
			p := basePod("does-not-fit", v1.RestartPolicyNever, c)
			p.Spec.NodeName = node
			return p
		},
		settled: terminalPhase,
	},
}

// eventsQuiet is how long the namespace's Event set must stay the same to
// count as complete; eventsTimeout bounds the wait.
const (
	eventsQuiet   = 5 * time.Second
	eventsTimeout = 30 * time.Second
)

// settledEvents lists the cases' Events (not the pre-pull Pod's) until the
// normalized set stays the same for eventsQuiet.
func (f *fw) settledEvents(names Names) []EventKey {
	f.T.Helper()
	var last []EventKey
	stableSince := time.Now()
	deadline := time.Now().Add(eventsTimeout)
	for {
		evs, err := f.Client.CoreV1().Events(f.Namespace).List(f.Ctx, metav1.ListOptions{})
		if err != nil {
			f.T.Fatal(err)
		}
		var ours []v1.Event
		for _, e := range evs.Items {
			if _, ok := statusCases[e.InvolvedObject.Name]; ok {
				ours = append(ours, e)
			}
		}
		cur := NormalizeEvents(ours, names)
		if !cmp.Equal(cur, last) {
			last, stableSince = cur, time.Now()
		}
		if time.Since(stableSince) >= eventsQuiet || time.Now().After(deadline) {
			return last
		}
		time.Sleep(time.Second)
	}
}

// settledRun is what one kubelet reported for the cases.
type settledRun struct {
	kubelet  cluster.Choice
	statuses map[string]v1.PodStatus
	events   []EventKey
}

// runCases creates every case's Pod in a fresh namespace, waits until each
// is settled, and returns the normalized statuses and Events; then deletes
// the Pods and waits until they are gone, so the next kubelet starts clean.
func runCases(t *testing.T, kubelet cluster.Choice) settledRun {
	f := newFW(t)
	nodes, err := f.Client.CoreV1().Nodes().List(f.Ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("want one node: %v", err)
	}
	nodeName := nodes.Items[0].Name
	// The image must be present for both kubelets alike (Pulled "already
	// present" Events, no Pulling): the first run on a fresh node would
	// otherwise pull it and the second not.
	f.CreatePod(basePod("prepull", v1.RestartPolicyNever, busybox("c", "true")))
	f.WaitForPodPhase("prepull", v1.PodSucceeded)
	if err := f.Client.CoreV1().Pods(f.Namespace).Delete(f.Ctx, "prepull", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.WaitForPodGone("prepull", 2*time.Minute)
	for _, c := range statusCases {
		f.CreatePod(c.pod(nodeName))
	}
	run := settledRun{kubelet: kubelet, statuses: map[string]v1.PodStatus{}}
	names := Names{Namespace: f.Namespace}
	raw := map[string]*v1.Pod{}
	for name, c := range statusCases {
		p := f.WatchPod(name, "settled", 4*time.Minute, func(p *v1.Pod) (bool, error) { return c.settled(p), nil })
		raw[name] = p
		names.PodUIDs = append(names.PodUIDs, string(p.UID))
	}
	// Events are recorded asynchronously (and a kubelet may batch them):
	// take the set once it has not changed for eventsQuiet.
	run.events = f.settledEvents(names)
	for name, p := range raw {
		if terminalPhase(p) {
			// A finished Pod's status still changes once after its phase
			// (the sandbox is stopped: PodReadyToStartContainers False);
			// by now, after the Events' quiet period, it has.
			if p, err = f.Client.CoreV1().Pods(f.Namespace).Get(f.Ctx, name, metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		run.statuses[name] = NormalizeStatus(p.Status, names, NormalizeOptions{RestartsAtLeast: statusCases[name].restartsAtLeast})
	}
	for name := range statusCases {
		if err := f.Client.CoreV1().Pods(f.Namespace).Delete(f.Ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	}
	for name := range statusCases {
		f.WaitForPodGone(name, 2*time.Minute)
	}
	return run
}

// TestStatusMatchesUpstream runs the cases under the upstream kubelet, then
// under ours (swapping the node's kubelet between), and diffs each Pod's
// settled status and the namespace's Events field by field. Normalized
// (NormalizeStatus, NormalizeEvents): IPs, container IDs, times, the
// namespace and UIDs in messages, back-off delays in messages, restart
// counts above 2 in crash loops, and in Event messages every number; Event
// counts and repeats are dropped.
func TestStatusMatchesUpstream(t *testing.T) {
	n := localNode(t)
	if why := n.oursUnavailable(); why != "" {
		t.Skip(why)
	}
	first := n.current(t)
	f := newFW(t)
	defer func() {
		if n.current(t) != first {
			n.swap(t, context.Background(), f.Client, first)
		}
	}()
	var runs []settledRun
	for _, k := range []cluster.Choice{cluster.Upstream, cluster.Ours} {
		if !t.Run(string(k), func(t *testing.T) {
			if n.current(t) != k {
				n.swap(t, f.Ctx, f.Client, k)
			}
			runs = append(runs, runCases(t, k))
		}) {
			t.Fatalf("the %s kubelet's run did not complete", k)
		}
	}
	up, ours := runs[0], runs[1]
	for name := range statusCases {
		if diff := cmp.Diff(up.statuses[name], ours.statuses[name]); diff != "" {
			t.Errorf("pod %s: status differs (-upstream +ours):\n%s", name, diff)
		}
	}
	if onlyUp, onlyOurs := EventsDiff(up.events, ours.events); len(onlyUp)+len(onlyOurs) > 0 {
		t.Errorf("events differ: only from upstream:\n  %s\nonly from ours:\n  %s",
			strings.Join(onlyUp, "\n  "), strings.Join(onlyOurs, "\n  "))
	}
	if t.Failed() {
		return
	}
	var b strings.Builder
	for name, s := range up.statuses {
		fmt.Fprintf(&b, "  %s: phase=%s\n", name, s.Phase)
	}
	t.Logf("statuses and %d distinct Events equal for %d Pods:\n%s", len(up.events), len(up.statuses), b.String())
}
