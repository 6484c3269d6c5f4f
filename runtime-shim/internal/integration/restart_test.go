package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func podConfig(dir, name string) *runtime.PodSandboxConfig {
	return &runtime.PodSandboxConfig{
		Metadata:     &runtime.PodSandboxMetadata{Name: name, Namespace: "rtshim", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(dir, "logs", name),
		DnsConfig:    &runtime.DNSConfig{Servers: []string{"10.88.77.53"}, Searches: []string{"rtshim.local"}},
		Labels:       map[string]string{"app": name},
		Linux:        &runtime.LinuxPodSandboxConfig{CgroupParent: "/rtshim-test/" + name},
	}
}

func execSync(t *testing.T, s *stack, id string, cmd ...string) *runtime.ExecSyncResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := s.cri.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 10})
	if err != nil {
		t.Fatalf("exec %v: %v\nshim log:\n%s", cmd, err, s.shimLog.String())
	}
	return r
}

// TestLifecycleAndRestart runs a Pod, restarts the shim, and checks that the
// same sandboxes and containers are listed, none was restarted, exec and
// logging still work, and Stop/Remove are idempotent.
func TestLifecycleAndRestart(t *testing.T) {
	s := newStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// A malformed request is InvalidArgument naming the field.
	_, err := s.cri.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "x"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "config") {
		t.Fatalf("malformed CreateContainer: %v, want InvalidArgument naming config", err)
	}

	pcfg := podConfig(s.dir, "web")
	run, err := s.cri.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: pcfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, s.shimLog.String())
	}
	pod := run.GetPodSandboxId()
	ccfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "main"},
		Image:    &runtime.ImageSpec{Image: testBusybox},
		Command:  []string{"/bin/sh", "-c", "echo hello; echo oops >&2; exec sleep 100000"},
		LogPath:  "main/0.log",
		Linux: &runtime.LinuxContainerConfig{
			Resources: &runtime.LinuxContainerResources{OomScoreAdj: -999, MemoryLimitInBytes: 64 << 20},
			// As the kubelet sends without shareProcessNamespace: the container's main process is its PID 1.
			SecurityContext: &runtime.LinuxContainerSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Pid: runtime.NamespaceMode_CONTAINER}},
		},
	}
	cr, err := s.cri.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: ccfg, SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, s.shimLog.String())
	}
	ctr := cr.GetContainerId()
	if _, err := s.cri.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, s.shimLog.String())
	}
	if r := execSync(t, s, ctr, "hostname"); string(r.Stdout) != "web\n" || r.ExitCode != 0 {
		t.Fatalf("hostname: %q exit %d", r.Stdout, r.ExitCode)
	}
	if r := execSync(t, s, ctr, "sh", "-c", "cat /etc/resolv.conf; exit 3"); r.ExitCode != 3 || !strings.Contains(string(r.Stdout), "nameserver 10.88.77.53") {
		t.Fatalf("resolv.conf: %q exit %d", r.Stdout, r.ExitCode)
	}
	logPath := filepath.Join(pcfg.LogDirectory, "main", "0.log")
	waitLog(t, s, logPath, " stdout F hello", " stderr F oops")

	// The Pod's containers share one /dev/shm (POSIX shared memory across
	// them), as with containerd's CRI.
	scfg := &runtime.ContainerConfig{
		Metadata: &runtime.ContainerMetadata{Name: "side"},
		Image:    &runtime.ImageSpec{Image: testBusybox},
		Command:  []string{"/bin/sh", "-c", "exec sleep 100000"},
		LogPath:  "side/0.log",
	}
	sr, err := s.cri.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod, Config: scfg, SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer side: %v\n%s", err, s.shimLog.String())
	}
	side := sr.GetContainerId()
	if _, err := s.cri.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: side}); err != nil {
		t.Fatalf("StartContainer side: %v\n%s", err, s.shimLog.String())
	}
	if r := execSync(t, s, ctr, "sh", "-c", "echo shared > /dev/shm/x"); r.ExitCode != 0 {
		t.Fatalf("write /dev/shm: exit %d %q", r.ExitCode, r.Stderr)
	}
	if r := execSync(t, s, side, "cat", "/dev/shm/x"); string(r.Stdout) != "shared\n" {
		t.Fatalf("/dev/shm not shared: %q exit %d %q", r.Stdout, r.ExitCode, r.Stderr)
	}

	before := snapshot(t, s, ctx)
	if n := len(before.pods); n != 1 {
		t.Fatalf("want 1 pod, got %d", n)
	}

	s.stopShim()
	s.startShim()
	s.waitReady()

	after := snapshot(t, s, ctx)
	if d := cmp.Diff(before, after, protocmp.Transform(), cmp.AllowUnexported(state{})); d != "" {
		t.Fatalf("state changed across restart (-before +after):\n%s", d)
	}
	if r := execSync(t, s, ctr, "echo", "still"); string(r.Stdout) != "still\n" {
		t.Fatalf("exec after restart: %q", r.Stdout)
	}
	// Output written after the restart still reaches the log: the FIFOs were re-adopted.
	if r := execSync(t, s, ctr, "sh", "-c", "echo after-restart > /proc/1/fd/1"); r.ExitCode != 0 {
		t.Fatalf("write to container stdout: exit %d %q\nshim log:\n%s", r.ExitCode, r.Stderr, s.shimLog.String())
	}
	waitLog(t, s, logPath, " stdout F after-restart")

	// Stop and Remove are idempotent.
	for i := 0; i < 2; i++ {
		if _, err := s.cri.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: ctr, Timeout: 2}); err != nil {
			t.Fatalf("StopContainer #%d: %v", i, err)
		}
	}
	st, err := s.cri.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ctr})
	if err != nil || st.GetStatus().GetState() != runtime.ContainerState_CONTAINER_EXITED || st.GetStatus().GetFinishedAt() == 0 {
		t.Fatalf("status after stop: %v %v", st, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.cri.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: ctr}); err != nil {
			t.Fatalf("RemoveContainer #%d: %v", i, err)
		}
		if _, err := s.cri.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("StopPodSandbox #%d: %v", i, err)
		}
	}
	for i := 0; i < 2; i++ {
		if _, err := s.cri.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatalf("RemovePodSandbox #%d: %v", i, err)
		}
	}
	if l, err := s.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err != nil || len(l.GetItems()) != 0 {
		t.Fatalf("pods left: %v %v", l, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.dir, "shim-state", "netns")); len(ents) != 0 {
		t.Fatalf("netns left behind: %v", ents)
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), pod) {
		t.Fatalf("a mount of the removed Pod is left behind:\n%s", mounts)
	}
}

type state struct {
	pods       []*runtime.PodSandbox
	containers []*runtime.Container
	statuses   []*runtime.ContainerStatus
}

func snapshot(t *testing.T, s *stack, ctx context.Context) state {
	t.Helper()
	p, err := s.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.cri.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	st := state{pods: p.GetItems(), containers: c.GetContainers()}
	for _, ct := range c.GetContainers() {
		r, err := s.cri.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: ct.GetId()})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetStatus().GetState() != runtime.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container %s is %s", ct.GetId(), r.GetStatus().GetState())
		}
		st.statuses = append(st.statuses, r.GetStatus())
	}
	return st
}

func waitLog(t *testing.T, s *stack, path string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var b []byte
	for time.Now().Before(deadline) {
		b, _ = os.ReadFile(path)
		ok := true
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("log %s lacks %q:\n%s\nshim log:\n%s", path, want, b, s.shimLog.String())
}
