package criserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	usernsutil "github.com/moby/sys/userns"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/zap"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/network"
)

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cgroupPath places a container under the Pod's cgroup parent in the form
// the configured driver expects.
func (s *Service) cgroupPath(parent, id string) string {
	if parent == "" {
		return ""
	}
	if s.cfg.CgroupDriver == "systemd" {
		return parent + ":runtime-shim:" + id
	}
	return filepath.Join(parent, id)
}

// RunPodSandbox creates the netns, runs the pause container in it and
// attaches it to the CNI network. On failure everything made is undone.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtime.RunPodSandboxRequest) (_ *runtime.RunPodSandboxResponse, retErr error) {
	cfg := r.GetConfig()
	if r.GetRuntimeHandler() != "" {
		return nil, toStatus(fmt.Errorf("%w: runtime handler %q: only the default handler exists", errInvalidSpec, r.GetRuntimeHandler()), "run sandbox")
	}
	userns, err := parseUserns(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return nil, toStatus(err, "run sandbox")
	}
	if userns.enabled() && !s.feat.UserNS {
		return nil, toStatus(fmt.Errorf("%w: user namespaces: the runtime lacks user namespace or idmapped mount support", errInvalidSpec), "run sandbox")
	}
	id := newID()
	name := sandboxName(cfg.GetMetadata())
	if err := s.reserve(name, id); err != nil {
		return nil, err
	}
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
			s.release(name)
		}
	}()
	cctx := s.ctx(ctx)
	img, err := s.ensureImage(ctx, s.cfg.SandboxImage)
	if err != nil {
		return nil, toStatus(err, "sandbox image "+s.cfg.SandboxImage)
	}
	cimg, err := s.unpacked(cctx, img)
	if err != nil {
		return nil, toStatus(err, "unpack sandbox image")
	}
	imgSpec, err := img.ImageConfig.Spec(cctx)
	if err != nil {
		return nil, toStatus(err, "sandbox image config")
	}

	dir := s.sandboxDir(id)
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	files, err := sandboxFiles(cfg, hostResolv)
	if err != nil {
		return nil, toStatus(err, "sandbox files")
	}
	if err := writeSandboxFiles(dir, files); err != nil {
		return nil, toStatus(err, "sandbox files")
	}
	undo = append(undo, func() { _ = os.RemoveAll(dir) })

	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	// Containers that share the Pod's IPC namespace share its /dev/shm too,
	// as with containerd's CRI: POSIX shared memory then works across them.
	if nsOpts.GetIpc() != runtime.NamespaceMode_NODE {
		shm := s.sandboxShm(id)
		if err := s.host.MountShm(shm); err != nil {
			return nil, toStatus(err, "sandbox /dev/shm")
		}
		undo = append(undo, func() { _ = s.host.UnmountShm(shm) })
	}
	hostNet := nsOpts.GetNetwork() == runtime.NamespaceMode_NODE
	var nsPath string
	if !hostNet {
		if nsPath, err = s.host.NewNetNS(s.netnsDir()); err != nil {
			return nil, toStatus(err, "create netns")
		}
		undo = append(undo, func() { _ = s.host.RemoveNetNS(nsPath) })
	}

	specOpts, err := sandboxSpecOpts(sandboxSpecInput{Config: cfg, Image: imgSpec.Config, ImageName: s.cfg.SandboxImage,
		NetNSPath: nsPath, CgroupPath: s.cgroupPath(cfg.GetLinux().GetCgroupParent(), id), OOMMin: s.oom,
		UnprivilegedPorts: kernelHasUnprivilegedPortStart(), UserNS: userns.enabled() || usernsutil.RunningInUserNS()})
	if err != nil {
		return nil, toStatus(err, "sandbox spec")
	}
	specOpts = append(specOpts, userns.specOpts(0)...)
	// The Pod's shim group, which its containers join (see CreateContainer).
	specOpts = append(specOpts, oci.WithAnnotations(map[string]string{annSandboxID: id}))
	ext, err := typeurl.MarshalAny(cfg)
	if err != nil {
		return nil, toStatus(err, "encode sandbox config")
	}
	labels := map[string]string{labelKind: kindSandbox, labelName: name, labelCreated: nowNanos(), labelNetNS: nsPath, labelState: "notready"}
	// The Pod network and the pause container only meet when the task
	// starts: set both up at once (CNI is mostly waiting on its plugins).
	var (
		ips     []string
		netErr  error
		netDone = make(chan struct{})
		pod     = network.Pod{ID: id, NetNS: nsPath, Name: cfg.GetMetadata().GetName(), Namespace: cfg.GetMetadata().GetNamespace(),
			UID: cfg.GetMetadata().GetUid(), PortMappings: cfg.GetPortMappings()}
	)
	if hostNet {
		close(netDone)
	} else {
		go func() {
			defer close(netDone)
			ips, netErr = s.net.Setup(ctx, pod)
		}()
	}
	// containerd's sandbox record lets the Pod's containers join the pause
	// task's runc shim without containerd running the shim binary for each
	// (its shim manager looks the sandbox up by the containers' SandboxID),
	// as with containerd's CRI. Written while the pause container is made.
	sbRecorded := make(chan error, 1)
	go func() {
		_, err := s.client.SandboxStore().Create(cctx, sandbox.Sandbox{ID: id,
			Labels: map[string]string{labelKind: kindSandbox}, Runtime: sandbox.RuntimeOpts{Name: s.cfg.RuntimeType}})
		sbRecorded <- err
	}()
	var rec containers.Container
	tin := taskInputs{snapshotter: s.cfg.Snapshotter, snapshotKey: id}
	ctr, err := s.client.NewContainer(cctx, id,
		containerd.WithImage(cimg),
		containerd.WithSnapshotter(s.cfg.Snapshotter),
		s.withNewSnapshot(id, cimg, &tin, userns.snapshotOpts()...),
		containerd.WithRuntime(s.cfg.RuntimeType, s.runcOptions()),
		containerd.WithNewSpec(append(specOpts, withTaskInputs(&tin))...),
		containerd.WithContainerLabels(labels),
		containerd.WithContainerExtension(extSandboxCfg, ext),
		captureMeta(&rec),
	)
	<-netDone
	if !hostNet && netErr == nil {
		undo = append(undo, func() { _ = s.net.Teardown(context.WithoutCancel(ctx), pod) })
	}
	sbErr := <-sbRecorded
	if sbErr == nil {
		undo = append(undo, func() { _ = s.client.SandboxStore().Delete(context.WithoutCancel(cctx), id) })
	}
	if err != nil {
		return nil, toStatus(err, "create pause container")
	}
	s.rememberSandbox(rec)
	undo = append(undo, func() {
		s.unindexSandbox(id)
		_ = ctr.Delete(context.WithoutCancel(cctx), containerd.WithSnapshotCleanup)
	})
	if netErr != nil {
		return nil, toStatus(netErr, "pod network")
	}
	if sbErr != nil {
		return nil, toStatus(errgrpc.ToNative(sbErr), "sandbox record")
	}

	// As StartContainer: the task from the kept snapshot mounts, without
	// the client's reads of the container record.
	nullIO, err := cio.NullIO(id)
	if err != nil {
		return nil, toStatus(err, "pause io")
	}
	task, pid, err := s.newInitTask(cctx, id, tin, nullIO)
	if err != nil {
		return nil, toStatus(err, "create pause task")
	}
	undo = append(undo, func() {
		s.dropLive(id)
		_ = task.deleteInit(context.WithoutCancel(cctx))
	})
	s.watchPause(id, pid, task.wait(context.WithoutCancel(cctx)))
	// Recorded while runc starts the pause (two waits that overlap); shown
	// only once it runs. Ready also needs the task running, so a record
	// left by a failed start is never read as ready.
	ready := map[string]string{labelState: "ready", labelIPs: strings.Join(ips, ",")}
	recorded := make(chan error, 1)
	go func() {
		_, err := ctr.SetLabels(cctx, ready)
		recorded <- err
	}()
	if err := task.startInit(cctx); err != nil {
		<-recorded
		return nil, toStatus(err, "start pause task")
	}
	if err := <-recorded; err != nil {
		return nil, toStatus(err, "record sandbox state")
	}
	s.noteLabels(id, ready)
	s.emit(ctx, id, id, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	s.log.Info("sandbox ready", zap.String("id", id), zap.String("name", name), zap.Strings("ips", ips))
	return &runtime.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// sandboxSpecInput is everything the pause container's spec depends on.
type sandboxSpecInput struct {
	Config     *runtime.PodSandboxConfig
	Image      imagespec.ImageConfig
	ImageName  string
	NetNSPath  string
	CgroupPath string
	OOMMin     int64
	// UnprivilegedPorts: the kernel has net.ipv4.ip_unprivileged_port_start (4.11).
	UnprivilegedPorts bool
	// UserNS: the Pod has a user namespace or this process runs in one.
	// Then neither network sysctl is set: the netns belongs to this
	// process's user namespace, so the Pod's runc may not write its sysctls
	// (containerd's CRI creates the netns inside the Pod's user namespace
	// instead), and ping_group_range cannot take the whole range.
	UserNS bool
}

// sandboxSpecOpts is the pause container's spec, a pure function of the
// config; what it adds to the request is what containerd's CRI adds.
func sandboxSpecOpts(in sandboxSpecInput) ([]oci.SpecOpts, error) {
	cfg := in.Config
	args := append(append([]string{}, in.Image.Entrypoint...), in.Image.Cmd...)
	if len(args) == 0 {
		args = []string{"/pause"}
	}
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutRlimits,
		oci.WithProcessArgs(args...),
		oci.WithEnv(in.Image.Env),
		oci.WithProcessCwd("/"),
		// The pause process writes nothing.
		oci.WithRootFSReadonly(),
		withOOMScoreAdj(-998, in.OOMMin),
		// The smallest CPU weight: the pause process only sleeps.
		oci.WithCPUShares(2),
		oci.WithAnnotations(map[string]string{
			"io.kubernetes.cri.container-type":        "sandbox",
			"io.kubernetes.cri.sandbox-name":          cfg.GetMetadata().GetName(),
			"io.kubernetes.cri.sandbox-namespace":     cfg.GetMetadata().GetNamespace(),
			"io.kubernetes.cri.sandbox-uid":           cfg.GetMetadata().GetUid(),
			"io.kubernetes.cri.sandbox-log-directory": cfg.GetLogDirectory(),
			"io.kubernetes.cri.podsandbox.image-name": in.ImageName,
		}),
	}
	// The Pod's user, else the image's (the pause image runs as 65535).
	if u := sc.GetRunAsUser(); u != nil {
		gid := uint32(0)
		if g := sc.GetRunAsGroup(); g != nil {
			gid = uint32(g.GetValue())
		}
		opts = append(opts, oci.WithUIDGID(uint32(u.GetValue()), gid))
	} else if in.Image.User != "" {
		opts = append(opts, oci.WithUser(in.Image.User))
	}
	nsPath, cgroup := in.NetNSPath, in.CgroupPath
	if ns.GetNetwork() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath}))
		if h := cfg.GetHostname(); h != "" {
			opts = append(opts, oci.WithHostname(h))
		}
	}
	if ns.GetPid() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.PIDNamespace))
	}
	if ns.GetIpc() == runtime.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(specs.IPCNamespace))
	}
	if sc.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged)
	} else {
		opts = append(opts, seccompDefaultUnlessUnconfined(sc.GetSeccomp()))
	}
	sysctls := map[string]string{}
	// As containerd's CRI (enable_unprivileged_ports and _icmp, on by
	// default): in its own network namespace a Pod's non-root processes
	// may bind any port and ping.
	if ns.GetNetwork() != runtime.NamespaceMode_NODE && !in.UserNS {
		if in.UnprivilegedPorts {
			sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
		}
		sysctls["net.ipv4.ping_group_range"] = "0 2147483647"
	}
	maps.Copy(sysctls, cfg.GetLinux().GetSysctls())
	if len(sysctls) > 0 {
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			if s.Linux.Sysctl == nil {
				s.Linux.Sysctl = map[string]string{}
			}
			for k, v := range sysctls {
				s.Linux.Sysctl[k] = v
			}
			return nil
		})
	}
	if cgroup != "" {
		opts = append(opts, oci.WithCgroup(cgroup))
	}
	return opts, nil
}

// kernelHasUnprivilegedPortStart: the sysctl exists from Linux 4.11.
var kernelHasUnprivilegedPortStart = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	return err == nil
})

func seccompDefaultUnlessUnconfined(p *runtime.SecurityProfile) oci.SpecOpts {
	if p != nil && p.GetProfileType() == runtime.SecurityProfile_RuntimeDefault {
		sc, _ := seccompOpt(&runtime.LinuxContainerSecurityContext{Seccomp: p}, "")
		return sc
	}
	return oci.WithSeccompUnconfined
}
