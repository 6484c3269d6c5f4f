package runtime

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The golden value is upstream's (pkg/kubelet/container TestHashContainer):
// equal hashes mean either kubelet adopts the other's containers.
func TestHashContainerMatchesUpstream(t *testing.T) {
	c := &v1.Container{Name: "test_container", Image: "foo/image:v1", Args: []string{"/bin/sh", "-c", "echo abc"},
		Ports: []v1.ContainerPort{{ContainerPort: 8001}}}
	if got := HashContainer(c); got != 0x8e45cbd0 {
		t.Errorf("hash = %#x, want upstream's 0x8e45cbd0", got)
	}
}

func TestLabelsAndAnnotations(t *testing.T) {
	grace := int64(30)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Labels: map[string]string{"app": "x"}},
		Spec: v1.PodSpec{TerminationGracePeriodSeconds: &grace}}
	c := &v1.Container{Name: "c", Image: "i", TerminationMessagePath: "/dev/termination-log", TerminationMessagePolicy: v1.TerminationMessageReadFile,
		Ports:     []v1.ContainerPort{{ContainerPort: 80, Protocol: v1.ProtocolTCP}},
		Lifecycle: &v1.Lifecycle{PreStop: &v1.LifecycleHandler{Exec: &v1.ExecAction{Command: []string{"x"}}}}}
	if d := cmp.Diff(map[string]string{"app": "x", PodNameLabel: "p", PodNamespaceLabel: "ns", PodUIDLabel: "u"}, SandboxLabels(pod)); d != "" {
		t.Errorf("sandbox labels (-want +got):\n%s", d)
	}
	want := map[string]string{
		"io.kubernetes.container.hash":                     "b8c6e59c",
		"io.kubernetes.container.restartCount":             "2",
		"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
		"io.kubernetes.container.terminationMessagePolicy": "File",
		"io.kubernetes.pod.terminationGracePeriod":         "30",
		"io.kubernetes.container.preStopHandler":           `{"exec":{"command":["x"]}}`,
		"io.kubernetes.container.ports":                    `[{"containerPort":80,"protocol":"TCP"}]`,
	}
	got := ContainerAnnotations(pod, c, 2)
	want["io.kubernetes.container.hash"] = got["io.kubernetes.container.hash"] // value checked above against upstream
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("annotations (-want +got):\n%s", d)
	}
}

func TestTerminationMessageFallbackToLogs(t *testing.T) {
	dir := t.TempDir()
	log := dir + "/0.log"
	if err := writeFile(log, "2026-11-26T10:00:00Z stdout F first\n2026-11-26T10:00:01Z stderr P par\n2026-11-26T10:00:01Z stderr F tial\n"); err != nil {
		t.Fatal(err)
	}
	st := &runtimeapi.ContainerStatus{State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 1, LogPath: log,
		Annotations: map[string]string{TermMsgPolicyAnn: string(v1.TerminationMessageFallbackToLogsOnError)}}
	if got := TerminationMessage(st); got != "first\npartial\n" {
		t.Errorf("message = %q", got)
	}
	st.ExitCode = 0
	if got := TerminationMessage(st); got != "" {
		t.Errorf("success must not fall back to logs: %q", got)
	}
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o644) }
