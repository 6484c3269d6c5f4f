package tests

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// terminated is the part of a terminated container state the tests compare.
type terminated struct {
	ExitCode int32
	Reason   string
}

func terminatedOf(t *testing.T, p *v1.Pod, container string) terminated {
	t.Helper()
	s, ok := framework.ContainerStatus(p, container)
	if !ok || s.State.Terminated == nil {
		t.Fatalf("container %s is not terminated: %+v", container, s.State)
	}
	return terminated{ExitCode: s.State.Terminated.ExitCode, Reason: s.State.Terminated.Reason}
}

func sortedLines(s string) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	sort.Strings(lines)
	return lines
}

func TestPodRunsToCompletion(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	t.Run("succeeds and its logs read back", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		f.CreatePod(framework.BusyboxPod("ok", v1.RestartPolicyNever, "echo line-one; echo line-two >&2; echo done"))
		p := f.WaitForPodPhase("ok", v1.PodSucceeded)
		if diff := cmp.Diff(terminated{0, "Completed"}, terminatedOf(t, p, "c")); diff != "" {
			t.Errorf("container state (-want +got):\n%s", diff)
		}
		logs, err := f.Logs("ok", "c", false)
		if err != nil {
			t.Fatal(err)
		}
		// stdout and stderr travel on separate pipes, so only the set of lines is fixed.
		if diff := cmp.Diff([]string{"done", "line-one", "line-two"}, sortedLines(logs)); diff != "" {
			t.Errorf("logs (-want +got):\n%s", diff)
		}
	})

	t.Run("fails with its exit code", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		f.CreatePod(framework.BusyboxPod("fail", v1.RestartPolicyNever, "echo failing; exit 3"))
		p := f.WaitForPodPhase("fail", v1.PodFailed)
		if diff := cmp.Diff(terminated{3, "Error"}, terminatedOf(t, p, "c")); diff != "" {
			t.Errorf("container state (-want +got):\n%s", diff)
		}
		if s, _ := framework.ContainerStatus(p, "c"); s.RestartCount != 0 {
			t.Errorf("restartPolicy Never restarted the container %d times", s.RestartCount)
		}
		logs, err := f.Logs("fail", "c", false)
		if err != nil {
			t.Fatal(err)
		}
		if logs != "failing\n" {
			t.Errorf("logs = %q, want %q", logs, "failing\n")
		}
	})
}

func TestEnv(t *testing.T) {
	t.Parallel()
	f := framework.New(t)
	cm := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "env-cm"},
		Data:       map[string]string{"color": "blue", "SIZE": "large"},
	}
	sec := &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "env-secret"},
		Data:       map[string][]byte{"password": []byte("s3cr3t"), "TOKEN": []byte("t0k3n")},
	}
	if _, err := f.Client.CoreV1().ConfigMaps(f.Namespace).Create(f.Ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Client.CoreV1().Secrets(f.Namespace).Create(f.Ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	field := func(path string) *v1.EnvVarSource {
		return &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: path}}
	}
	res := func(r, divisor string) *v1.EnvVarSource {
		return &v1.EnvVarSource{ResourceFieldRef: &v1.ResourceFieldSelector{Resource: r, Divisor: resource.MustParse(divisor)}}
	}
	pod := framework.BusyboxPod("env", v1.RestartPolicyNever, "env")
	pod.Labels = map[string]string{"app": "env-test"}
	c := &pod.Spec.Containers[0]
	c.Resources = v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("64Mi")},
	}
	c.Env = []v1.EnvVar{
		{Name: "POD_NAME", ValueFrom: field("metadata.name")},
		{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
		{Name: "POD_UID", ValueFrom: field("metadata.uid")},
		{Name: "POD_LABEL_APP", ValueFrom: field("metadata.labels['app']")},
		{Name: "POD_IP", ValueFrom: field("status.podIP")},
		{Name: "HOST_IP", ValueFrom: field("status.hostIP")},
		{Name: "NODE_NAME", ValueFrom: field("spec.nodeName")},
		{Name: "SA_NAME", ValueFrom: field("spec.serviceAccountName")},
		{Name: "CPU_REQUEST_MILLI", ValueFrom: res("requests.cpu", "1m")},
		{Name: "CPU_LIMIT", ValueFrom: res("limits.cpu", "1")},
		{Name: "MEMORY_LIMIT_MI", ValueFrom: res("limits.memory", "1Mi")},
		{Name: "MEMORY_REQUEST", ValueFrom: res("requests.memory", "1")},
		{Name: "CM_COLOR", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "env-cm"}, Key: "color"}}},
		{Name: "SECRET_PASSWORD", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "env-secret"}, Key: "password"}}},
		{Name: "EXPANDED", Value: "pod=$(POD_NAME) color=$(CM_COLOR)"},
	}
	c.EnvFrom = []v1.EnvFromSource{
		{Prefix: "FROM_CM_", ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "env-cm"}}},
		{Prefix: "FROM_SECRET_", SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "env-secret"}}},
	}
	f.CreatePod(pod)
	p := f.WaitForPodPhase("env", v1.PodSucceeded)
	logs, err := f.Logs("env", "c", false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(logs, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	want := map[string]string{
		"POD_NAME":             "env",
		"POD_NAMESPACE":        f.Namespace,
		"POD_UID":              string(p.UID),
		"POD_LABEL_APP":        "env-test",
		"POD_IP":               p.Status.PodIP,
		"HOST_IP":              p.Status.HostIP,
		"NODE_NAME":            p.Spec.NodeName,
		"SA_NAME":              "default",
		"CPU_REQUEST_MILLI":    "250",
		"CPU_LIMIT":            "1", // 500m rounded up to whole divisors
		"MEMORY_LIMIT_MI":      "64",
		"MEMORY_REQUEST":       "33554432",
		"CM_COLOR":             "blue",
		"SECRET_PASSWORD":      "s3cr3t",
		"EXPANDED":             "pod=env color=blue",
		"FROM_CM_color":        "blue",
		"FROM_CM_SIZE":         "large",
		"FROM_SECRET_password": "s3cr3t",
		"FROM_SECRET_TOKEN":    "t0k3n",
	}
	subset := map[string]string{}
	for k := range want {
		if v, ok := got[k]; ok {
			subset[k] = v
		}
	}
	if diff := cmp.Diff(want, subset); diff != "" {
		t.Errorf("environment (-want +got):\n%s\nfull log:\n%s", diff, logs)
	}
}

func TestInitContainers(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	t.Run("run in order before the app containers", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		pod := framework.BusyboxPod("init", v1.RestartPolicyNever, "echo main >> /work/log; cat /work/log")
		pod.Spec.InitContainers = []v1.Container{
			framework.BusyboxContainer("init-1", "echo init-1 >> /work/log; sleep 1"),
			framework.BusyboxContainer("init-2", "echo init-2 >> /work/log"),
		}
		withEmptyDir(&pod.Spec, "work", "/work")
		f.CreatePod(pod)
		p := f.WaitForPodPhase("init", v1.PodSucceeded)
		logs, err := f.Logs("init", "c", false)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff("init-1\ninit-2\nmain\n", logs); diff != "" {
			t.Errorf("order of writes (-want +got):\n%s", diff)
		}
		for _, name := range []string{"init-1", "init-2"} {
			if diff := cmp.Diff(terminated{0, "Completed"}, terminatedOf(t, p, name)); diff != "" {
				t.Errorf("%s state (-want +got):\n%s", name, diff)
			}
		}
		first, _ := framework.ContainerStatus(p, "init-1")
		second, _ := framework.ContainerStatus(p, "init-2")
		if second.State.Terminated.StartedAt.Before(&first.State.Terminated.FinishedAt) {
			t.Errorf("init-2 started at %s, before init-1 finished at %s", second.State.Terminated.StartedAt, first.State.Terminated.FinishedAt)
		}
	})

	t.Run("a failing one fails the pod and the app never starts", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		pod := framework.BusyboxPod("init-fail", v1.RestartPolicyNever, "echo should-not-run")
		pod.Spec.InitContainers = []v1.Container{
			framework.BusyboxContainer("init-1", "exit 2"),
			framework.BusyboxContainer("init-2", "true"),
		}
		f.CreatePod(pod)
		p := f.WaitForPodPhase("init-fail", v1.PodFailed)
		if diff := cmp.Diff(terminated{2, "Error"}, terminatedOf(t, p, "init-1")); diff != "" {
			t.Errorf("init-1 state (-want +got):\n%s", diff)
		}
		for _, name := range []string{"init-2", "c"} {
			if s, _ := framework.ContainerStatus(p, name); s.State.Running != nil || (s.State.Terminated != nil && !s.State.Terminated.StartedAt.IsZero()) {
				t.Errorf("container %s ran after init-1 failed: %+v", name, s.State)
			}
		}
	})
}

func TestRestartPolicy(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	t.Run("OnFailure restarts with back-off until success", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		// The run counter lives in an emptyDir, which survives container restarts.
		pod := framework.BusyboxPod("onfailure", v1.RestartPolicyOnFailure,
			`echo run >> /data/runs; n=0; while read l; do n=$((n+1)); done < /data/runs; echo attempt $n; [ "$n" -ge 3 ]`)
		withEmptyDir(&pod.Spec, "data", "/data")
		f.CreatePod(pod)
		sawBackOff := false
		p := f.WatchPod("onfailure", "phase Succeeded after two failures", 4*time.Minute, func(p *v1.Pod) (bool, error) {
			sawBackOff = sawBackOff || waitingReason(p, "c") == "CrashLoopBackOff"
			return p.Status.Phase == v1.PodSucceeded, nil
		})
		s, _ := framework.ContainerStatus(p, "c")
		if s.RestartCount != 2 {
			t.Errorf("restartCount = %d, want 2", s.RestartCount)
		}
		if !sawBackOff {
			t.Errorf("never saw the container waiting in CrashLoopBackOff between failures")
		}
		if diff := cmp.Diff(terminated{0, "Completed"}, terminatedOf(t, p, "c")); diff != "" {
			t.Errorf("final state (-want +got):\n%s", diff)
		}
		if logs, err := f.Logs("onfailure", "c", false); err != nil || logs != "attempt 3\n" {
			t.Errorf("logs = %q (%v), want %q", logs, err, "attempt 3\n")
		}
	})

	t.Run("Always restarts a container that exits 0, with back-off", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		f.CreatePod(framework.BusyboxPod("always", v1.RestartPolicyAlways, "echo ran; exit 0"))
		sawBackOff := false
		p := f.WatchPod("always", "restartCount >= 2 and CrashLoopBackOff", 4*time.Minute, func(p *v1.Pod) (bool, error) {
			if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
				return false, errPhase(p)
			}
			sawBackOff = sawBackOff || waitingReason(p, "c") == "CrashLoopBackOff"
			s, _ := framework.ContainerStatus(p, "c")
			return sawBackOff && s.RestartCount >= 2, nil
		})
		s, _ := framework.ContainerStatus(p, "c")
		if s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 0 {
			t.Errorf("last termination = %+v, want exit 0", s.LastTerminationState)
		}
		// The container restarts every few seconds and the kubelet removes
		// older dead instances, so a read can race with that removal: retry.
		// The upstream kubelet can publish a lastState whose container its GC
		// has just removed and keep it until the back-off (up to 40 s at
		// this restart count) ends, with any runtime: poll across the next
		// restart.
		var logs string
		err := wait.PollUntilContextTimeout(f.Ctx, time.Second, 100*time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			logs, err = f.Logs("always", "c", true)
			return err == nil && logs == "ran\n", nil
		})
		if err != nil {
			t.Errorf("previous logs = %q, want %q: %v", logs, "ran\n", err)
		}
	})
}

func waitingReason(p *v1.Pod, container string) string {
	if s, ok := framework.ContainerStatus(p, container); ok && s.State.Waiting != nil {
		return s.State.Waiting.Reason
	}
	return ""
}

type phaseError struct{ phase v1.PodPhase }

func (e phaseError) Error() string { return "pod reached phase " + string(e.phase) }

func errPhase(p *v1.Pod) error { return phaseError{p.Status.Phase} }

func withEmptyDir(spec *v1.PodSpec, name, path string) {
	spec.Volumes = append(spec.Volumes, v1.Volume{Name: name, VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}})
	for _, list := range [][]v1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			list[i].VolumeMounts = append(list[i].VolumeMounts, v1.VolumeMount{Name: name, MountPath: path})
		}
	}
}
