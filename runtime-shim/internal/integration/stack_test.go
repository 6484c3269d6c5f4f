// Package integration runs runtime-shim against a real, private containerd
// (binaries from the artifact cache). Every path is under /tmp/rtshim-*, the
// CNI bridge is rtshim0 on 10.88.77.0/24 with no gateway and no masquerade,
// so no Pod packet can leave the machine. Tests skip without root or binaries.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/shared/daemontest"
)

const (
	testBusybox = "rtshim.test/busybox:1"
	testPause   = "rtshim.test/pause:1"
	bridgeName  = "rtshim0"
	subnet      = "10.88.77.0/24"
)

func cacheDir() string {
	if d := os.Getenv("NODESUITE_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nodesuite"
}

type stack struct {
	t        *testing.T
	dir      string
	binDir   string
	cniBin   string
	ctrd     *exec.Cmd
	ctrdDone chan error
	shimBin  string
	shim     *exec.Cmd
	shimDone chan error
	shimLog  *bytes.Buffer
	cri      runtime.RuntimeServiceClient
	img      runtime.ImageServiceClient
	conn     *grpc.ClientConn
	client   *containerd.Client
}

func (s *stack) sock() string     { return filepath.Join(s.dir, "cri.sock") }
func (s *stack) ctrdSock() string { return filepath.Join(s.dir, "containerd.sock") }

// newStack starts containerd (CRI plugin disabled) and the shim.
func newStack(t *testing.T) *stack {
	t.Helper()
	if os.Getenv("RTSHIM_INTEGRATION") == "" {
		t.Skip("set RTSHIM_INTEGRATION=1 (make runtime-shim-integration) to run against a real containerd")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, runc, netns, CNI)")
	}
	bin := filepath.Join(cacheDir(), "bin")
	cni := filepath.Join(cacheDir(), "cni", "bin")
	for _, p := range []string{filepath.Join(bin, "containerd"), filepath.Join(bin, "containerd-shim-runc-v2"), filepath.Join(bin, "runc"),
		filepath.Join(cni, "bridge"), filepath.Join(cni, "host-local"), filepath.Join(cni, "loopback")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s from the artifact cache (make artifacts)", p)
		}
	}
	if out, err := exec.Command("ip", "link", "show", bridgeName).CombinedOutput(); err == nil {
		t.Skipf("bridge %s exists: another run of this test is active?\n%s", bridgeName, out)
	}
	dir, err := os.MkdirTemp("/tmp", "rtshim-")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, dir: dir, binDir: bin, cniBin: cni}
	t.Cleanup(s.cleanup)

	cfg := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %q
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), s.ctrdSock(), s.ctrdSock()+".ttrpc", filepath.Join(dir, "opt"), filepath.Join(dir, "s"))
	must(t, os.WriteFile(filepath.Join(dir, "containerd.toml"), []byte(cfg), 0o600))
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"rtshim","plugins":[
 {"type":"bridge","bridge":%q,"isGateway":false,"ipMasq":false,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}`, bridgeName, subnet, filepath.Join(dir, "ipam"))
	must(t, os.MkdirAll(filepath.Join(dir, "net.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "net.d", "10-rtshim.conflist"), []byte(conf), 0o644))

	var clog bytes.Buffer
	s.ctrd = exec.Command(filepath.Join(bin, "containerd"), "--config", filepath.Join(dir, "containerd.toml"))
	s.ctrd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	s.ctrd.Stdout, s.ctrd.Stderr = &clog, &clog
	s.ctrd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, s.ctrd.Start())
	s.ctrdDone = make(chan error, 1)
	go func() { s.ctrdDone <- s.ctrd.Wait() }()
	waitFor(t, 30*time.Second, func() error { _, err := os.Stat(s.ctrdSock()); return err })

	s.client, err = containerd.New(s.ctrdSock(), containerd.WithDefaultNamespace("k8s.io"))
	must(t, err)
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	if _, err := s.client.Import(ctx, bytes.NewReader(testImages(t))); err != nil {
		t.Fatalf("import test images: %v\ncontainerd log:\n%s", err, clog.String())
	}

	s.shimBin = daemontest.Build(t, "../../cmd/runtime-shim")
	s.startShim()
	conn, err := grpc.NewClient("unix://"+s.sock(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	s.conn = conn
	s.cri = runtime.NewRuntimeServiceClient(conn)
	s.img = runtime.NewImageServiceClient(conn)
	s.waitReady()
	return s
}

func (s *stack) startShim() {
	s.t.Helper()
	s.shimLog = &bytes.Buffer{}
	s.shim = exec.Command(s.shimBin,
		"--socket", s.sock(),
		"--containerd-address", s.ctrdSock(),
		"--containerd-namespace", "k8s.io",
		"--sandbox-image", testPause,
		"--cni-conf-dir", filepath.Join(s.dir, "net.d"),
		"--cni-bin-dir", s.cniBin,
		"--registry-config-dir", filepath.Join(s.dir, "certs.d"),
		"--root-dir", filepath.Join(s.dir, "shim-root"),
		"--state-dir", filepath.Join(s.dir, "shim-state"),
		"--streaming-address", "127.0.0.1:0",
		"--cgroup-driver", "cgroupfs",
		"--ops-bind-address", "127.0.0.1:0",
	)
	s.shim.Stdout, s.shim.Stderr = s.shimLog, s.shimLog
	must(s.t, s.shim.Start())
	done := make(chan error, 1)
	go func() { done <- s.shim.Wait() }()
	s.shimDone = done
}

func (s *stack) stopShim() {
	s.t.Helper()
	if s.shim == nil {
		return
	}
	_ = s.shim.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.shimDone:
		if err != nil {
			s.t.Errorf("shim exit after SIGTERM: %v\n%s", err, s.shimLog.String())
		}
	case <-time.After(40 * time.Second):
		_ = s.shim.Process.Kill()
		<-s.shimDone
		s.t.Errorf("shim did not stop within 40s\n%s", s.shimLog.String())
	}
	s.shim = nil
}

func (s *stack) waitReady() {
	s.t.Helper()
	waitFor(s.t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := s.cri.Status(ctx, &runtime.StatusRequest{})
		if err != nil {
			return err
		}
		for _, c := range st.GetStatus().GetConditions() {
			if !c.GetStatus() {
				return fmt.Errorf("%s: %s %s", c.GetType(), c.GetReason(), c.GetMessage())
			}
		}
		return nil
	})
}

// cleanup removes every Pod through the shim, stops both daemons, and
// removes mounts, the bridge and the directory.
func (s *stack) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if s.shim != nil && s.cri != nil {
		if l, err := s.cri.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err == nil {
			for _, p := range l.GetItems() {
				_, _ = s.cri.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.GetId()})
				_, _ = s.cri.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.GetId()})
			}
		}
	}
	if s.conn != nil {
		_ = s.conn.Close()
	}
	if s.shim != nil {
		_ = s.shim.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.shimDone:
		case <-time.After(20 * time.Second):
			_ = s.shim.Process.Kill()
		}
	}
	if s.client != nil {
		_ = s.client.Close()
	}
	if s.ctrd != nil && s.ctrd.Process != nil {
		_ = s.ctrd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.ctrdDone:
		case <-time.After(20 * time.Second):
			_ = s.ctrd.Process.Kill()
		}
	}
	// Any runc shim of this stack still alive (a failed test) goes too.
	if out, err := exec.Command("pgrep", "-f", "containerd-shim-runc-v2.*"+s.ctrdSock()).Output(); err == nil {
		for _, p := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
	}
	unmountUnder(s.dir)
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	removeTestCgroups()
	if err := os.RemoveAll(s.dir); err != nil {
		s.t.Logf("cleanup %s: %v", s.dir, err)
	}
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mps[i], syscall.MNT_DETACH)
	}
}

func waitFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not ready after %s: %v", d, err)
}

var _ = net.IPv4len

// removeTestCgroups removes the Pod cgroup parents the test used (runc
// removes the containers' own cgroups but not their parents).
func removeTestCgroups() {
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*/rtshim-test")
	for _, c := range ctrls {
		pods, _ := filepath.Glob(filepath.Join(c, "*"))
		for _, p := range pods {
			if fi, err := os.Stat(p); err == nil && fi.IsDir() {
				_ = syscall.Rmdir(p)
			}
		}
		_ = syscall.Rmdir(c)
	}
}
