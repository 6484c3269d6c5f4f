package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// TestBinaryStaticPodsAndRestart runs the kubelet binary standalone (no API
// server) with a config file shaped like the harness's, against the real
// containerd: a static Pod starts, survives a kubelet restart without a
// container restart, and goes away with its manifest.
func TestBinaryStaticPodsAndRestart(t *testing.T) {
	s := startStack(t)
	bin := filepath.Join(s.Dir, "kubelet")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kubelet").CombinedOutput(); err != nil {
		t.Fatalf("build kubelet: %v\n%s", err, out)
	}
	manifests := filepath.Join(s.Dir, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := filepath.Join(s.Dir, "kubelet.yaml")
	write(t, cfg, fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}}
authorization: {mode: Webhook}
healthzBindAddress: 127.0.0.1
healthzPort: %d
staticPodPath: %s
fileCheckFrequency: 1s
podLogsDir: %s
cgroupRoot: /%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: %s
serializeImagePulls: false
`, port, manifests, filepath.Join(s.Dir, "pod-logs"), CgroupRoot, filepath.Join(s.Dir, "resolv.conf")))
	write(t, filepath.Join(s.Dir, "resolv.conf"), "nameserver 10.88.66.1\n")
	args := []string{"--config=" + cfg, "--container-runtime-endpoint=unix://" + s.Socket, "--hostname-override=kubeletit",
		"--node-ip=10.88.66.1", "--root-dir=" + filepath.Join(s.Dir, "kubelet-root")}
	start := func(n int) *exec.Cmd {
		logf, err := os.Create(filepath.Join(s.Dir, "logs", fmt.Sprintf("kubelet-%d.log", n)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		waitHealthy(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		return cmd
	}
	stop := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("kubelet exit after SIGTERM: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("kubelet did not stop on SIGTERM")
		}
	}
	k1 := start(1)
	write(t, filepath.Join(manifests, "web.yaml"), fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web, namespace: kube-system}
spec:
  terminationGracePeriodSeconds: 2
  dnsPolicy: Default
  containers:
  - {name: c, image: %q, args: [run, "3600", "0"]}
`, TinyImage))
	rt, err := runtime.Connect(context.Background(), "unix://"+s.Socket, "unix://"+s.Socket, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	first := waitRunning(t, rt, "web-kubeletit", 90*time.Second)
	// The QoS and pod cgroups, as upstream's container manager makes them:
	// the BestEffort tier and the Pod at the minimum 2 shares, kubepods
	// at the node's CPUs.
	pods, err := rt.ListPods(context.Background())
	if err != nil || len(pods) != 1 {
		t.Fatalf("pods: %v %v", pods, err)
	}
	var uid string
	for u := range pods {
		uid = string(u)
	}
	cpu := "/sys/fs/cgroup/cpu/" + CgroupRoot + "/kubepods"
	for file, want := range map[string]string{
		cpu + "/cpu.shares":                           strconv.Itoa(1024 * goruntime.NumCPU()),
		cpu + "/besteffort/cpu.shares":                "2",
		cpu + "/besteffort/pod" + uid + "/cpu.shares": "2",
	} {
		if got := strings.TrimSpace(readFile(file)); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	stop(k1)
	k2 := start(2)
	time.Sleep(4 * time.Second) // several syncs and relists of the new kubelet
	if again := waitRunning(t, rt, "web-kubeletit", 10*time.Second); again != first {
		t.Errorf("container restarted across a kubelet restart: %s -> %s", first, again)
	}
	_ = os.Remove(filepath.Join(manifests, "web.yaml"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		pods, err := rt.ListPods(context.Background())
		if err == nil && len(pods) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("static pod not removed after its manifest; kubelet log:\n%s", readFile(filepath.Join(s.Dir, "logs", "kubelet-2.log")))
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop(k2)
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not healthy", url)
}

// waitRunning returns the ID of the Pod's running container.
func waitRunning(t *testing.T, rt *runtime.Runtime, podName string, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		pods, err := rt.ListPods(context.Background())
		if err == nil {
			for _, p := range pods {
				if p.Name != podName {
					continue
				}
				var ids []string
				for _, c := range p.Containers {
					if c.Status.State.String() == "CONTAINER_RUNNING" {
						ids = append(ids, c.Status.Id)
					}
				}
				if len(ids) == 1 {
					return strings.Join(ids, ",")
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("pod %s has no running container after %s", podName, d)
	return ""
}
