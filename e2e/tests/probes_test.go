package tests

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

func execProbe(cmd ...string) v1.ProbeHandler {
	return v1.ProbeHandler{Exec: &v1.ExecAction{Command: cmd}}
}

func httpProbe(path string, port int32) v1.ProbeHandler {
	return v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: path, Port: intstr.FromInt32(port)}}
}

func tcpProbe(port int32) v1.ProbeHandler {
	return v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(port)}}
}

// fast probes every second and acts on the first failure, so the tests
// see an effect within seconds.
func fast(h v1.ProbeHandler) *v1.Probe {
	return &v1.Probe{ProbeHandler: h, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 1}
}

// startTolerant lets a probe that must pass at first ride out a slow start
// (a server not yet bound, a script not yet run) on a loaded node.
func startTolerant(p *v1.Probe) *v1.Probe {
	p.InitialDelaySeconds = 1
	p.FailureThreshold = 3
	return p
}

func agnhostContainer(name string, args ...string) v1.Container {
	return v1.Container{Name: name, Image: framework.AgnhostImage, ImagePullPolicy: v1.PullIfNotPresent, Args: args}
}

// waitRestarted waits until the container has been restarted at least once
// and returns how long its first instance ran.
func waitRestarted(f *framework.Framework, pod, container string) (*v1.Pod, time.Duration) {
	f.T.Helper()
	p := f.WaitForPod(pod, "container "+container+" restarted", 3*time.Minute, func(p *v1.Pod) (bool, error) {
		s, _ := framework.ContainerStatus(p, container)
		return s.RestartCount >= 1 && s.LastTerminationState.Terminated != nil, nil
	})
	s, _ := framework.ContainerStatus(p, container)
	last := s.LastTerminationState.Terminated
	return p, last.FinishedAt.Sub(last.StartedAt.Time)
}

func TestProbes(t *testing.T) {
	t.Parallel()
	f := framework.New(t)

	t.Run("liveness exec failure restarts the container", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		pod := framework.BusyboxPod("live-exec", v1.RestartPolicyAlways, "touch /tmp/healthy; sleep 8; rm -f /tmp/healthy; exec sleep 3600")
		pod.Spec.Containers[0].LivenessProbe = startTolerant(fast(execProbe("cat", "/tmp/healthy")))
		f.CreatePod(pod)
		_, ran := waitRestarted(f, "live-exec", "c")
		// Healthy for its first 8 s: a restart before that means the probe failed while it should pass.
		if ran < 7*time.Second {
			t.Errorf("first instance ran %s, want >= 7s (the probe passes while /tmp/healthy exists, 8s)", ran)
		}
	})

	t.Run("liveness HTTP failure restarts the container", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		// agnhost liveness serves /healthz 200 for 10 s, then 500.
		c := agnhostContainer("c", "liveness")
		c.LivenessProbe = startTolerant(fast(httpProbe("/healthz", 8080)))
		pod := framework.BusyboxPod("live-http", v1.RestartPolicyAlways, "")
		pod.Spec.Containers[0] = c
		f.CreatePod(pod)
		_, ran := waitRestarted(f, "live-http", "c")
		if ran < 9*time.Second {
			t.Errorf("first instance ran %s, want >= 9s (healthz answered 200 for 10s)", ran)
		}
	})

	t.Run("liveness TCP failure restarts the container, success does not", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		server := agnhostContainer("server", "netexec", "--http-port=8080", "--udp-port=-1")
		server.LivenessProbe = startTolerant(fast(tcpProbe(8080)))
		closed := framework.BusyboxContainer("closed", "exec sleep 3600")
		closed.LivenessProbe = fast(tcpProbe(8099)) // nothing in the Pod listens there
		pod := framework.BusyboxPod("live-tcp", v1.RestartPolicyAlways, "")
		pod.Spec.Containers = []v1.Container{server, closed}
		f.CreatePod(pod)
		p := f.WaitForPod("live-tcp", "container closed restarted twice", 3*time.Minute, func(p *v1.Pod) (bool, error) {
			s, _ := framework.ContainerStatus(p, "closed")
			return s.RestartCount >= 2, nil
		})
		if s, _ := framework.ContainerStatus(p, "server"); s.RestartCount != 0 || s.State.Running == nil {
			t.Errorf("container with a passing TCP liveness probe: restarts=%d state=%+v, want running without restarts\n%s", s.RestartCount, s.State, f.DescribePod("live-tcp"))
		}
	})

	t.Run("readiness HTTP gates Ready after its initial delay", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		pod := framework.NetexecPod("ready-delay", nil)
		pod.Spec.Containers[0].ReadinessProbe = fast(httpProbe("/healthz", framework.NetexecPort))
		pod.Spec.Containers[0].ReadinessProbe.InitialDelaySeconds = 8
		f.CreatePod(pod)
		p := f.WaitForPodRunningReady("ready-delay")
		s, _ := framework.ContainerStatus(p, "netexec")
		readyAt := readyTransition(p)
		if d := readyAt.Sub(s.State.Running.StartedAt.Time); d < 7*time.Second {
			t.Errorf("Ready %s after the container started, want >= 8s initial delay (1s clock granularity)", d)
		}
		if s.RestartCount != 0 {
			t.Errorf("readiness probe restarted the container %d times", s.RestartCount)
		}
	})

	t.Run("readiness HTTP failure clears Ready without a restart", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		c := agnhostContainer("c", "liveness") // /healthz 200 for 10 s, then 500
		c.ReadinessProbe = fast(httpProbe("/healthz", 8080))
		pod := framework.BusyboxPod("ready-fail", v1.RestartPolicyAlways, "")
		pod.Spec.Containers[0] = c
		f.CreatePod(pod)
		f.WaitForPodRunningReady("ready-fail")
		p := f.WaitForPod("ready-fail", "Ready to turn false", 2*time.Minute, func(p *v1.Pod) (bool, error) {
			return p.Status.Phase == v1.PodRunning && !framework.PodReady(p), nil
		})
		if s, _ := framework.ContainerStatus(p, "c"); s.RestartCount != 0 || s.State.Running == nil {
			t.Errorf("failing readiness probe: restarts=%d state=%+v, want running without restarts", s.RestartCount, s.State)
		}
	})

	t.Run("startup probe holds off liveness", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		// Liveness would fail at once until /tmp/started exists; the startup
		// probe must keep it from running until then.
		script := "sleep 8; touch /tmp/started; exec sleep 3600"
		pod := framework.BusyboxPod("startup", v1.RestartPolicyAlways, script)
		c := &pod.Spec.Containers[0]
		c.StartupProbe = fast(execProbe("cat", "/tmp/started"))
		c.StartupProbe.FailureThreshold = 60
		c.LivenessProbe = fast(execProbe("cat", "/tmp/started"))
		// The same container without a startup probe is the control: liveness kills it.
		control := framework.BusyboxPod("startup-control", v1.RestartPolicyAlways, script)
		control.Spec.Containers[0].LivenessProbe = fast(execProbe("cat", "/tmp/started"))
		f.CreatePod(pod)
		f.CreatePod(control)

		sawUnstarted := false
		p := f.WaitForPod("startup", "container started", 2*time.Minute, func(p *v1.Pod) (bool, error) {
			s, _ := framework.ContainerStatus(p, "c")
			if s.State.Running != nil && (s.Started == nil || !*s.Started) {
				sawUnstarted = true
			}
			return s.Started != nil && *s.Started, nil
		})
		s, _ := framework.ContainerStatus(p, "c")
		if !sawUnstarted {
			t.Errorf("never saw the container running but not yet started")
		}
		if s.RestartCount != 0 {
			t.Errorf("liveness restarted the container %d times before the startup probe passed\n%s", s.RestartCount, f.DescribePod("startup"))
		}
		if s.State.Running != nil {
			if d := time.Since(s.State.Running.StartedAt.Time); d < 7*time.Second {
				t.Errorf("startup probe passed %s after start, want >= 8s", d)
			}
		}
		waitRestarted(f, "startup-control", "c")
		// By now the startup probe has passed for several seconds and liveness runs and passes.
		p = f.WaitForPodRunningReady("startup")
		if s, _ := framework.ContainerStatus(p, "c"); s.RestartCount != 0 {
			t.Errorf("container restarted %d times after starting", s.RestartCount)
		}
	})
}

func readyTransition(p *v1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}
