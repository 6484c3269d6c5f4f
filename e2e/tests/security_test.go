package tests

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// seccompMode exits with the container's seccomp mode from
// /proc/self/status: 0 unconfined, 2 filtered.
const seccompMode = "exit $(grep '^Seccomp:' /proc/self/status | cut -f2)"

// TestSecurityContext checks that the kubelet passes the Pod's security
// context to the runtime: seccomp profiles are applied, and runAsNonRoot
// stops an image that would run as root before it starts.
func TestSecurityContext(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	for _, tc := range []struct {
		name    string
		profile *v1.SeccompProfile
		want    terminated
	}{
		{"seccomp-runtime-default", &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault}, terminated{2, "Error"}},
		{"seccomp-unconfined", &v1.SeccompProfile{Type: v1.SeccompProfileTypeUnconfined}, terminated{0, "Completed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := f.Sub(t)
			pod := framework.BusyboxPod(tc.name, v1.RestartPolicyNever, seccompMode)
			pod.Spec.SecurityContext = &v1.PodSecurityContext{SeccompProfile: tc.profile}
			f.CreatePod(pod)
			p := f.WaitForPod(tc.name, "terminated", 2*time.Minute, func(p *v1.Pod) (bool, error) {
				return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed, nil
			})
			if d := cmp.Diff(tc.want, terminatedOf(t, p, "c")); d != "" {
				t.Errorf("container state (-want +got):\n%s", d)
			}
		})
	}

	t.Run("runAsNonRoot refuses a root image", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		pod := framework.BusyboxPod("nonroot", v1.RestartPolicyNever, "true")
		pod.Spec.Containers[0].SecurityContext = &v1.SecurityContext{RunAsNonRoot: ptr.To(true)}
		f.CreatePod(pod)
		f.WaitForPod("nonroot", "CreateContainerConfigError", 2*time.Minute, func(p *v1.Pod) (bool, error) {
			s, ok := framework.ContainerStatus(p, "c")
			return ok && s.State.Waiting != nil && s.State.Waiting.Reason == "CreateContainerConfigError", nil
		})
	})
}
