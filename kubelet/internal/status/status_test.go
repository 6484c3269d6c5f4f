package status

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

var (
	t0    = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	mt0   = metav1.NewTime(t0)
	f, tr = false, true
)

func sandbox() *runtimeapi.PodSandboxStatus {
	return &runtimeapi.PodSandboxStatus{Id: "sb", State: runtimeapi.PodSandboxState_SANDBOX_READY,
		Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "10.244.0.5"}}
}

func rc(name, id string, state runtimeapi.ContainerState, exit int32, restarts int) *runtime.Container {
	st := &runtimeapi.ContainerStatus{Id: id, State: state, ExitCode: exit, ImageRef: "sha256:img",
		StartedAt: t0.UnixNano(), CreatedAt: t0.UnixNano()}
	if state == runtimeapi.ContainerState_CONTAINER_EXITED {
		st.FinishedAt = t0.UnixNano()
		st.Reason = "Completed"
		if exit != 0 {
			st.Reason = "Error"
		}
	}
	return &runtime.Container{Status: st, SandboxID: "sb", Name: name, RestartCount: restarts}
}

func pod(policy v1.RestartPolicy, init []v1.Container, cs ...v1.Container) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:   v1.PodSpec{RestartPolicy: policy, InitContainers: init, Containers: cs},
		Status: v1.PodStatus{Conditions: []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: mt0}}}}
}

func c(name string) v1.Container { return v1.Container{Name: name, Image: "img:1"} }

func cond(t v1.PodConditionType, ok bool, reason, msg string) v1.PodCondition {
	s := v1.ConditionFalse
	if ok {
		s = v1.ConditionTrue
	}
	return v1.PodCondition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: mt0}
}

var scheduled = v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: mt0}

func running(name, id string, restarts int32) v1.ContainerStatus {
	return v1.ContainerStatus{Name: name, Image: "img:1", ImageID: "sha256:img", ContainerID: "containerd://" + id,
		State: v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: mt0}}, Ready: true, Started: &tr,
		RestartCount: restarts, Resources: &v1.ResourceRequirements{}}
}

func terminated(exit int32, id string) *v1.ContainerStateTerminated {
	r := "Completed"
	if exit != 0 {
		r = "Error"
	}
	return &v1.ContainerStateTerminated{ExitCode: exit, Reason: r, StartedAt: mt0, FinishedAt: mt0, ContainerID: "containerd://" + id}
}

func TestCompute(t *testing.T) {
	start := mt0
	base := v1.PodStatus{QOSClass: v1.PodQOSBestEffort, StartTime: &start, HostIP: "192.0.2.2", HostIPs: []v1.HostIP{{IP: "192.0.2.2"}},
		PodIP: "10.244.0.5", PodIPs: []v1.PodIP{{IP: "10.244.0.5"}},
		Resources: &v1.ResourceRequirements{Requests: v1.ResourceList{}, Limits: v1.ResourceList{}}}
	with := func(s v1.PodStatus, mod func(*v1.PodStatus)) v1.PodStatus { mod(&s); return s }
	with1 := func(c v1.PodCondition, mod func(*v1.PodCondition)) v1.PodCondition { mod(&c); return c }
	tests := []struct {
		name     string
		pod      *v1.Pod
		rt       *runtime.Pod
		reasons  map[string]Reason
		terminal bool
		want     v1.PodStatus
	}{{
		name: "running and ready",
		pod:  pod(v1.RestartPolicyAlways, nil, c("a")),
		rt:   &runtime.Pod{Sandboxes: []*runtimeapi.PodSandboxStatus{sandbox()}, Containers: []*runtime.Container{rc("a", "1", runtimeapi.ContainerState_CONTAINER_RUNNING, 0, 0)}},
		want: with(base, func(s *v1.PodStatus) {
			s.Phase = v1.PodRunning
			s.ContainerStatuses = []v1.ContainerStatus{running("a", "1", 0)}
			s.Conditions = []v1.PodCondition{cond(v1.PodReadyToStartContainers, true, "", ""), cond(v1.PodInitialized, true, "", ""),
				cond(v1.PodReady, true, "", ""), cond(v1.ContainersReady, true, "", ""), scheduled}
		}),
	}, {
		name:    "crash loop",
		pod:     pod(v1.RestartPolicyAlways, nil, c("a")),
		rt:      &runtime.Pod{Sandboxes: []*runtimeapi.PodSandboxStatus{sandbox()}, Containers: []*runtime.Container{rc("a", "2", runtimeapi.ContainerState_CONTAINER_EXITED, 1, 1), rc("a", "1", runtimeapi.ContainerState_CONTAINER_EXITED, 1, 0)}},
		reasons: map[string]Reason{"a": {Reason: CrashLoopBackOff, Message: "back-off 10s"}},
		want: with(base, func(s *v1.PodStatus) {
			s.Phase = v1.PodRunning
			s.ContainerStatuses = []v1.ContainerStatus{{Name: "a", Image: "img:1", ImageID: "sha256:img", ContainerID: "containerd://2",
				State:                v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: CrashLoopBackOff, Message: "back-off 10s"}},
				LastTerminationState: v1.ContainerState{Terminated: terminated(1, "2")}, RestartCount: 1, Started: &f,
				Resources: &v1.ResourceRequirements{}}}
			s.Conditions = []v1.PodCondition{cond(v1.PodReadyToStartContainers, true, "", ""), cond(v1.PodInitialized, true, "", ""),
				cond(v1.PodReady, false, ContainersNotReady, "containers with unready status: [a]"),
				cond(v1.ContainersReady, false, ContainersNotReady, "containers with unready status: [a]"), scheduled}
		}),
	}, {
		name:     "completed",
		pod:      pod(v1.RestartPolicyNever, nil, c("a")),
		rt:       &runtime.Pod{Sandboxes: []*runtimeapi.PodSandboxStatus{{Id: "sb", State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}}, Containers: []*runtime.Container{rc("a", "1", runtimeapi.ContainerState_CONTAINER_EXITED, 0, 0)}},
		terminal: true,
		want: with(base, func(s *v1.PodStatus) {
			s.Phase = v1.PodSucceeded
			s.PodIP, s.PodIPs = "", nil
			s.ContainerStatuses = []v1.ContainerStatus{{Name: "a", Image: "img:1", ImageID: "sha256:img", ContainerID: "containerd://1",
				State: v1.ContainerState{Terminated: terminated(0, "1")}, Started: &f, Resources: &v1.ResourceRequirements{}}}
			s.Conditions = []v1.PodCondition{cond(v1.PodReadyToStartContainers, false, PodSandboxNotReady, "pod sandbox is not ready"),
				with1(cond(v1.PodInitialized, true, "", ""), func(c *v1.PodCondition) { c.Reason = PodCompleted }),
				cond(v1.PodReady, false, PodCompleted, ""), cond(v1.ContainersReady, false, PodCompleted, ""), scheduled}
		}),
	}, {
		name: "initializing",
		pod:  pod(v1.RestartPolicyAlways, []v1.Container{c("init")}, c("a")),
		rt:   &runtime.Pod{Sandboxes: []*runtimeapi.PodSandboxStatus{sandbox()}, Containers: []*runtime.Container{rc("init", "1", runtimeapi.ContainerState_CONTAINER_RUNNING, 0, 0)}},
		want: with(base, func(s *v1.PodStatus) {
			s.Phase = v1.PodPending
			s.InitContainerStatuses = []v1.ContainerStatus{running("init", "1", 0)}
			s.ContainerStatuses = []v1.ContainerStatus{{Name: "a", Image: "img:1", Started: &f,
				State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: PodInitializing}}}}
			s.Conditions = []v1.PodCondition{cond(v1.PodReadyToStartContainers, true, "", ""),
				cond(v1.PodInitialized, false, ContainersNotInit, "containers with incomplete status: [init]"),
				cond(v1.PodReady, false, ContainersNotReady, "containers with unready status: [a]"),
				cond(v1.ContainersReady, false, ContainersNotReady, "containers with unready status: [a]"), scheduled}
		}),
	}, {
		name: "init failed with Never",
		pod:  pod(v1.RestartPolicyNever, []v1.Container{c("init")}, c("a")),
		rt:   &runtime.Pod{Sandboxes: []*runtimeapi.PodSandboxStatus{sandbox()}, Containers: []*runtime.Container{rc("init", "1", runtimeapi.ContainerState_CONTAINER_EXITED, 2, 0)}},
		want: with(base, func(s *v1.PodStatus) {
			s.Phase = v1.PodFailed
			s.InitContainerStatuses = []v1.ContainerStatus{{Name: "init", Image: "img:1", ImageID: "sha256:img", ContainerID: "containerd://1",
				State: v1.ContainerState{Terminated: terminated(2, "1")}, Started: &f, Resources: &v1.ResourceRequirements{}}}
			s.ContainerStatuses = []v1.ContainerStatus{{Name: "a", Image: "img:1", Started: &f,
				State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: PodInitializing}}}}
			s.Conditions = []v1.PodCondition{cond(v1.PodReadyToStartContainers, true, "", ""),
				cond(v1.PodInitialized, false, ContainersNotInit, "containers with incomplete status: [init]"),
				cond(v1.PodReady, false, PodFailed, ""), cond(v1.ContainersReady, false, PodFailed, ""), scheduled}
		}),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Compute(Input{Pod: tc.pod, Runtime: tc.rt, RuntimeName: "containerd", Reasons: tc.reasons,
				HostIPs: []string{"192.0.2.2"}, Terminal: tc.terminal, Now: t0})
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("status (-want +got):\n%s", d)
			}
		})
	}
}
