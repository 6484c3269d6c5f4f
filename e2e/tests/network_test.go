package tests

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// Service traffic waits for the proxy to program the node, which it does
// asynchronously after the EndpointSlice changes.
const serviceTimeout = 2 * time.Minute

// TestServices puts two netexec backends behind a NodePort Service (which has
// a ClusterIP too) and reaches them from a client Pod, through DNS, and from
// the node.
func TestServices(t *testing.T) {
	t.Parallel()
	f := framework.New(t)
	labels := map[string]string{"app": "backend"}
	backends := []string{"backend-0", "backend-1"}
	for _, name := range backends {
		f.CreatePod(framework.NetexecPod(name, labels))
	}
	f.CreatePod(framework.NetexecPod("client", nil))
	svc, err := f.Client.CoreV1().Services(f.Namespace).Create(f.Ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: v1.ServiceSpec{
			Type:     v1.ServiceTypeNodePort,
			Selector: labels,
			Ports: []v1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: v1.ProtocolTCP},
				{Name: "udp", Port: 81, TargetPort: intstr.FromString("udp"), Protocol: v1.ProtocolUDP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podIPs := map[string]string{}
	for _, name := range backends {
		podIPs[name] = f.WaitForPodRunningReady(name).Status.PodIP
	}
	client := f.WaitForPodRunningReady("client")
	waitEndpoints(t, f, "backend", map[string]discoveryv1.EndpointConditions{
		"backend-0": readyConditions, "backend-1": readyConditions,
	})
	clusterIP := svc.Spec.ClusterIP
	nodePort := int(svc.Spec.Ports[0].NodePort)
	want := slices.Clone(backends)
	sort.Strings(want)

	t.Run("pod to pod", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		for _, b := range backends {
			for _, proto := range []string{"http", "udp"} {
				port := framework.NetexecPort
				if proto == "udp" {
					port = framework.NetexecUDPPort
				}
				r, err := f.Dial("client", proto, podIPs[b], port, "hostname", 1)
				if err != nil {
					t.Errorf("%s to %s: %v", proto, b, err)
					continue
				}
				if diff := cmp.Diff(framework.DialResult{Responses: []string{b}}, r); diff != "" {
					t.Errorf("%s to pod %s at %s (-want +got):\n%s", proto, b, podIPs[b], diff)
				}
			}
		}
	})

	t.Run("ClusterIP from a pod reaches every backend", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		if got := dialUntil(t, f, "http", clusterIP, 80, want); got != nil {
			t.Errorf("backends answering on %s:80 = %v, want %v", clusterIP, got, want)
		}
	})

	t.Run("ClusterIP UDP from a pod", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		if got := dialUntil(t, f, "udp", clusterIP, 81, want); got != nil {
			t.Errorf("backends answering on udp %s:81 = %v, want %v", clusterIP, got, want)
		}
	})

	t.Run("Service DNS names resolve in a pod", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		for _, host := range []string{
			fmt.Sprintf("backend.%s.svc.%s", f.Namespace, framework.ClusterDomain()),
			"backend", // through the Pod's search path
		} {
			if got := dialUntil(t, f, "http", host, 80, want); got != nil {
				t.Errorf("backends answering on %s:80 = %v, want %v", host, got, want)
			}
		}
	})

	t.Run("ClusterIP and NodePort from the node", func(t *testing.T) {
		t.Parallel()
		f := f.Sub(t)
		nodeIP := client.Status.HostIP
		targets := []string{
			net.JoinHostPort(clusterIP, "80"),
			net.JoinHostPort(nodeIP, strconv.Itoa(nodePort)),
		}
		if framework.OnNode() {
			for _, target := range targets {
				if got := httpUntil(t, f, target, want); got != nil {
					t.Errorf("backends answering on %s from the node = %v, want %v", target, got, want)
				}
			}
			return
		}
		// Not on the node: a hostNetwork Pod stands in for it.
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "node-client"},
			Spec: v1.PodSpec{
				HostNetwork:                   true,
				NodeName:                      client.Spec.NodeName,
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    []v1.Container{agnhostContainer("c", "pause")},
			},
		}
		f.CreatePod(pod)
		f.WaitForPodRunningReady("node-client")
		for _, target := range targets {
			var last framework.ExecResult
			err := wait.PollUntilContextTimeout(f.Ctx, time.Second, serviceTimeout, true, func(ctx context.Context) (bool, error) {
				r, err := f.Exec("node-client", "c", framework.WebSocket, "", "/agnhost", "connect", target, "--timeout=5s")
				last = r
				return err == nil && r.ExitCode == 0, nil
			})
			if err != nil {
				t.Errorf("connect to %s from a hostNetwork pod: %v (last: %+v)", target, err, last)
			}
		}
	})
}

// dialUntil dials host:port from the client Pod until every backend in want
// has answered; it returns nil then, or the backends seen by the deadline.
func dialUntil(t *testing.T, f *framework.Framework, proto, host string, port int, want []string) []string {
	t.Helper()
	seen := map[string]bool{}
	var lastErr error
	_ = wait.PollUntilContextTimeout(f.Ctx, time.Second, serviceTimeout, true, func(ctx context.Context) (bool, error) {
		r, err := f.Dial("client", proto, host, port, "hostname", 10)
		if err != nil {
			lastErr = err
			return false, nil
		}
		if len(r.Errors) > 0 {
			lastErr = fmt.Errorf("%v", r.Errors)
		}
		for _, h := range r.Responses {
			seen[h] = true
		}
		return len(seen) >= len(want), nil
	})
	got := sortedKeys(seen)
	if cmp.Equal(want, got) {
		return nil
	}
	t.Logf("%s %s:%d: last error: %v", proto, host, port, lastErr)
	return got
}

// httpUntil sends HTTP requests from the test process itself (it runs on the
// node) until every backend in want has answered. Only the cluster's own
// Service and Node addresses are ever passed in.
func httpUntil(t *testing.T, f *framework.Framework, hostPort string, want []string) []string {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	seen := map[string]bool{}
	var lastErr error
	_ = wait.PollUntilContextTimeout(f.Ctx, 500*time.Millisecond, serviceTimeout, true, func(ctx context.Context) (bool, error) {
		resp, err := hc.Get("http://" + hostPort + "/hostname")
		if err != nil {
			lastErr = err
			return false, nil
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			lastErr = fmt.Errorf("status %d body %q: %v", resp.StatusCode, b, err)
			return false, nil
		}
		seen[string(b)] = true
		return len(seen) >= len(want), nil
	})
	got := sortedKeys(seen)
	if cmp.Equal(want, got) {
		return nil
	}
	t.Logf("%s: last error: %v", hostPort, lastErr)
	return got
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var (
	readyConditions   = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	unreadyConditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
)

// endpointConditions maps each Pod in the Service's EndpointSlices to its conditions.
func endpointConditions(ctx context.Context, f *framework.Framework, service string) (map[string]discoveryv1.EndpointConditions, error) {
	list, err := f.Client.DiscoveryV1().EndpointSlices(f.Namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil, err
	}
	got := map[string]discoveryv1.EndpointConditions{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				got[e.TargetRef.Name] = e.Conditions
			}
		}
	}
	return got, nil
}

// waitEndpoints waits until the Service's EndpointSlices list exactly these
// Pods with these conditions.
func waitEndpoints(t *testing.T, f *framework.Framework, service string, want map[string]discoveryv1.EndpointConditions) {
	t.Helper()
	var got map[string]discoveryv1.EndpointConditions
	err := wait.PollUntilContextTimeout(f.Ctx, framework.Poll, framework.PodChangeTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = endpointConditions(ctx, f, service)
		return err == nil && cmp.Equal(want, got), nil
	})
	if err != nil {
		t.Fatalf("EndpointSlices of service %s: %v; endpoints (-want +got):\n%s", service, err, cmp.Diff(want, got))
	}
}

// TestReadinessEndpointSlice turns a Pod's readiness off and on again and
// checks its endpoint's conditions follow.
func TestReadinessEndpointSlice(t *testing.T) {
	t.Parallel()
	f := framework.New(t)
	labels := map[string]string{"app": "gated"}
	pod := framework.NetexecPod("gated", labels)
	// A second container's readiness, toggled through exec, decides the Pod's.
	gate := framework.BusyboxContainer("gate", "touch /tmp/ready; exec sleep 3600")
	gate.ReadinessProbe = fast(execProbe("cat", "/tmp/ready"))
	pod.Spec.Containers = append(pod.Spec.Containers, gate)
	f.CreatePod(pod)
	if _, err := f.Client.CoreV1().Services(f.Namespace).Create(f.Ctx, &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "gated"},
		Spec: v1.ServiceSpec{
			Selector: labels,
			Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(framework.NetexecPort)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.WaitForPodRunningReady("gated")
	waitEndpoints(t, f, "gated", map[string]discoveryv1.EndpointConditions{"gated": readyConditions})

	toggle := func(cmd string) {
		t.Helper()
		r, err := f.Exec("gated", "gate", framework.WebSocket, "", "sh", "-c", cmd)
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("exec %q: %+v %v", cmd, r, err)
		}
	}
	toggle("rm /tmp/ready")
	f.WaitForPod("gated", "Ready to turn false", framework.PodChangeTimeout, func(p *v1.Pod) (bool, error) {
		return !framework.PodReady(p), nil
	})
	waitEndpoints(t, f, "gated", map[string]discoveryv1.EndpointConditions{"gated": unreadyConditions})

	toggle("touch /tmp/ready")
	f.WaitForPodRunningReady("gated")
	waitEndpoints(t, f, "gated", map[string]discoveryv1.EndpointConditions{"gated": readyConditions})
}
