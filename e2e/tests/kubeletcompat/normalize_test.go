package kubeletcompat

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNormalizeStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC))
	names := Names{Namespace: "e2e-abcde", PodUIDs: []string{"1111-2222"}}
	in := v1.PodStatus{
		Phase:     v1.PodRunning,
		PodIP:     "10.244.0.7",
		PodIPs:    []v1.PodIP{{IP: "10.244.0.7"}},
		HostIP:    "192.0.2.10",
		StartTime: &now,
		Conditions: []v1.PodCondition{
			{Type: v1.PodReady, Status: v1.ConditionFalse, LastTransitionTime: now, Reason: "ContainersNotReady"},
		},
		ContainerStatuses: []v1.ContainerStatus{{
			Name:         "c",
			ContainerID:  "containerd://abc",
			RestartCount: 5,
			State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: "back-off 1m20s restarting failed container=c pod=crash_e2e-abcde(1111-2222)",
			}},
			LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: now, FinishedAt: now, ContainerID: "containerd://abc",
			}},
		}},
	}
	want := v1.PodStatus{
		Phase:     v1.PodRunning,
		PodIP:     PlaceholderIP,
		PodIPs:    []v1.PodIP{{IP: PlaceholderIP}},
		HostIP:    PlaceholderIP,
		StartTime: &Stamp,
		Conditions: []v1.PodCondition{
			{Type: v1.PodReady, Status: v1.ConditionFalse, LastTransitionTime: Stamp, Reason: "ContainersNotReady"},
		},
		ContainerStatuses: []v1.ContainerStatus{{
			Name:         "c",
			ContainerID:  PlaceholderID,
			RestartCount: 2,
			State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: "back-off <delay> restarting failed container=c pod=crash_<ns>(<uid>)",
			}},
			LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: Stamp, FinishedAt: Stamp, ContainerID: PlaceholderID,
			}},
		}},
	}
	got := NormalizeStatus(in, names, NormalizeOptions{RestartsAtLeast: 2})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// Unset values stay unset: a kubelet that leaves them out still differs.
	if diff := cmp.Diff(v1.PodStatus{Phase: v1.PodPending}, NormalizeStatus(v1.PodStatus{Phase: v1.PodPending}, names, NormalizeOptions{})); diff != "" {
		t.Errorf("empty status changed (-want +got):\n%s", diff)
	}
}

func TestNormalizeEvents(t *testing.T) {
	names := Names{Namespace: "e2e-x1"}
	ev := func(obj, reason, msg string) v1.Event {
		return v1.Event{
			InvolvedObject: v1.ObjectReference{Name: obj, FieldPath: "spec.containers{c}"},
			Source:         v1.EventSource{Component: "kubelet"},
			Type:           v1.EventTypeNormal, Reason: reason, Message: msg,
		}
	}
	in := []v1.Event{
		ev("p", "Pulled", "Successfully pulled image \"x\" in 1.2s (1.5s including waiting). Image size: 1234 bytes."),
		ev("p", "Started", "Started container c"),
		ev("p", "Pulled", "Successfully pulled image \"x\" in 300ms (300ms including waiting). Image size: 1234 bytes."),
		ev("p", "FailedMount", `MountVolume.SetUp failed for volume "kube-api-access-vggcd" : failed to fetch token: serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node`),
	}
	want := []EventKey{
		{Object: "p/spec.containers{c}", Source: "kubelet", Type: "Normal", Reason: "Pulled", Message: "Successfully pulled image \"x\" in N (N including waiting). Image size: N bytes."},
		{Object: "p/spec.containers{c}", Source: "kubelet", Type: "Normal", Reason: "Started", Message: "Started container c"},
	}
	if diff := cmp.Diff(want, NormalizeEvents(in, names)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNormalizeVolumesAndResources(t *testing.T) {
	in := v1.PodStatus{
		Resources: &v1.ResourceRequirements{Limits: v1.ResourceList{v1.ResourceMemory: resource.MustParse("1Gi")}},
		ContainerStatuses: []v1.ContainerStatus{{Name: "c", VolumeMounts: []v1.VolumeMountStatus{
			{Name: "kube-api-access-x7k2q", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
			{Name: "data", MountPath: "/data"},
		}}},
	}
	want := v1.PodStatus{
		Resources: &v1.ResourceRequirements{},
		ContainerStatuses: []v1.ContainerStatus{{Name: "c", VolumeMounts: []v1.VolumeMountStatus{
			{Name: "kube-api-access-<random>", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
			{Name: "data", MountPath: "/data"},
		}}},
	}
	if diff := cmp.Diff(want, NormalizeStatus(in, Names{}, NormalizeOptions{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEventsDiff(t *testing.T) {
	a := []EventKey{{Object: "p", Reason: "Started"}, {Object: "p", Reason: "Pulled"}}
	b := []EventKey{{Object: "p", Reason: "Started"}, {Object: "p", Reason: "Killing"}}
	onlyA, onlyB := EventsDiff(a, b)
	if diff := cmp.Diff([]string{"p []  Pulled: "}, onlyA); diff != "" {
		t.Errorf("only a (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"p []  Killing: "}, onlyB); diff != "" {
		t.Errorf("only b (-want +got):\n%s", diff)
	}
}
