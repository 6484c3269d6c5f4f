package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Everything the test creates on the host is named for it (kubeletit) and
// removed at the end; addresses are a private bridge and loopback only.
const (
	bridgeName = "kubeletit0"
	subnet     = "10.88.66.0/24"
	cacheBin   = "/var/cache/nodesuite/bin"
	cniBin     = "/var/cache/nodesuite/cni/bin"
	// PauseImage is the sandbox image containerd is configured with.
	PauseImage = "registry.k8s.io/pause:3.10.2"
	// TinyImage holds the tiny test program as its entrypoint.
	TinyImage = "registry.k8s.io/nodesuite-kubeletit/tiny:1"
)

// stack is a private containerd with its CRI plugin, CNI on a private
// bridge, and a registry on 127.0.0.1 that serves the test's images.
type stack struct {
	Dir    string
	Socket string
	cmd    *exec.Cmd
}

func requireStack(t *testing.T) {
	t.Helper()
	if os.Getenv("NODESUITE_KUBELET_IT") != "1" {
		t.Skip("integration test against a real containerd: run by `make test-kubelet-integration` (NODESUITE_KUBELET_IT=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts containerd and a bridge")
	}
	for _, b := range []string{cacheBin + "/containerd", cacheBin + "/containerd-shim-runc-v2", cacheBin + "/runc", cniBin + "/bridge", cniBin + "/host-local", cniBin + "/loopback"} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("needs %s (built by the artifacts engineer: make artifacts)", b)
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	if out, err := exec.Command("ip", "link", "show", bridgeName).CombinedOutput(); err == nil {
		t.Skipf("bridge %s exists already (another run?): %s", bridgeName, out)
	}
}

func startStack(t *testing.T) *stack {
	t.Helper()
	requireStack(t)
	dir, err := os.MkdirTemp("/tmp", "kubeletit-")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{Dir: dir, Socket: filepath.Join(dir, "containerd.sock")}
	t.Cleanup(func() { s.stop(t) })
	makeCgroups(t, CgroupRoot)
	regAddr := startRegistry(t, dir)
	for _, d := range []string{"certs.d/registry.k8s.io", "cni/net.d", "cni/ipam", "s", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "certs.d/registry.k8s.io/hosts.toml"),
		fmt.Sprintf("server = \"https://registry.k8s.io\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", regAddr))
	write(t, filepath.Join(dir, "cni/net.d/10-kubeletit.conflist"), fmt.Sprintf(`{"cniVersion":"1.0.0","name":"kubeletit","plugins":[
 {"type":"bridge","bridge":%q,"isGateway":true,"isDefaultGateway":false,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}}]}`, bridgeName, subnet, filepath.Join(dir, "cni/ipam")))
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = %[5]q
  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = %[6]q
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = "overlayfs"
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %[7]q
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = %[8]q
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%[9]q]
      conf_dir = %[10]q
      max_conf_num = 1
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = "runc"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = %[11]q
          Root = %[12]q
          SystemdCgroup = false
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), s.Socket, s.Socket+".ttrpc", filepath.Join(dir, "opt"),
		filepath.Join(dir, "s"), PauseImage, filepath.Join(dir, "certs.d"), cniBin, filepath.Join(dir, "cni/net.d"),
		cacheBin+"/runc", filepath.Join(dir, "runc"))
	write(t, filepath.Join(dir, "containerd.toml"), cfg)
	logf, err := os.Create(filepath.Join(dir, "logs/containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(cacheBin+"/containerd", "--config", filepath.Join(dir, "containerd.toml"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), "PATH="+cacheBin+":"+os.Getenv("PATH"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", s.Socket); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not start; log:\n%s", readFile(filepath.Join(dir, "logs/containerd.log")))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

func (s *stack) stop(t *testing.T) {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	// Shims of containers the test left running; only ours (their socket dir is ours).
	killShims(s.Dir)
	unmountUnder(s.Dir)
	_ = exec.Command("ip", "link", "del", bridgeName).Run()
	removeCgroups(CgroupRoot)
	if t.Failed() {
		t.Logf("kept %s for inspection", s.Dir)
		return
	}
	_ = os.RemoveAll(s.Dir)
}

// CgroupRoot is the kubelet's cgroupRoot in the test; removed at the end.
const CgroupRoot = "kubeletit"

// makeCgroups creates the cgroupRoot in every v1 hierarchy (not the empty
// hybrid "unified"), as a node's setup does: the kubelet refuses to start
// without it, as upstream's does. A v1 cpuset cgroup takes no tasks until
// its cpus and mems are set.
func makeCgroups(t *testing.T, root string) {
	t.Helper()
	hier, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hier {
		if !h.IsDir() || h.Name() == "unified" {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", h.Name(), root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if h.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err == nil {
					err = os.WriteFile(filepath.Join(dir, f), v, 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// removeCgroups removes the (empty, once the containers are gone) cgroups
// the runtime made under root in every hierarchy, deepest first.
func removeCgroups(root string) {
	hier, _ := filepath.Glob("/sys/fs/cgroup/*/" + root)
	for _, h := range hier {
		var dirs []string
		_ = filepath.WalkDir(h, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

func killShims(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), "containerd-shim") && strings.Contains(string(cmdline), dir) {
			var pid int
			if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func unmountUnder(dir string) {
	data, _ := os.ReadFile("/proc/self/mounts")
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir) {
			mps = append(mps, f[1])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps))) // deepest first
	for _, m := range mps {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// startRegistry builds the tiny program, wraps it into the pause and test
// images and serves them from an in-memory registry on 127.0.0.1.
func startRegistry(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tiny")
	build := exec.Command("go", "build", "-o", bin, "./testdata/tiny")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tiny: %v\n%s", err, out)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	addr := ln.Addr().String()
	layer := tinyLayer(t, bin)
	for ref, entry := range map[string][]string{PauseImage: {"/tiny", "pause"}, TinyImage: {"/tiny"}} {
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", goruntime.GOARCH
		cf.Config.Entrypoint = entry
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		mirror := strings.Replace(ref, "registry.k8s.io", addr, 1)
		r, err := name.ParseReference(mirror, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(r, img); err != nil {
			t.Fatalf("push %s: %v", mirror, err)
		}
	}
	return addr
}

func tinyLayer(t *testing.T, bin string) v1.Layer {
	t.Helper()
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"dev/", "proc/", "sys/", "etc/", "tmp/"} {
		_ = tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	_ = tw.WriteHeader(&tar.Header{Name: "tiny", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))})
	_, _ = tw.Write(data)
	_ = tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

var _ = http.StatusOK
var _ = context.Background
