package criserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/zap"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer builds the OCI spec from the CRI config and the image
// config and creates the containerd container (no task yet).
func (s *Service) CreateContainer(ctx context.Context, r *runtime.CreateContainerRequest) (_ *runtime.CreateContainerResponse, retErr error) {
	sb, err := s.getSandbox(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	if sb.State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, toStatus(fmt.Errorf("%w: sandbox %s is not ready", errInvalidSpec, sb.ID), "create container")
	}
	id := newID()
	cfg, err := s.resolveImageVolumes(ctx, sb.ID, r.GetConfig())
	if err != nil {
		return nil, toStatus(err, "image volumes")
	}
	name := containerName(cfg.GetMetadata(), sb.Config.GetMetadata())
	if err := s.reserve(name, id); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.release(name)
		}
	}()
	cctx := s.ctx(ctx)
	img, err := s.containerImage(ctx, cfg.GetImage().GetImage())
	if err != nil {
		return nil, toStatus(err, "container image")
	}
	ispec, err := img.ImageConfig.Spec(cctx)
	if err != nil {
		return nil, toStatus(err, "image config")
	}
	in := specInput{
		ID: id, Config: cfg, Sandbox: sb.Config, Image: ispec.Config,
		SandboxDir: s.sandboxDir(sb.ID), NetNSPath: sb.NetNS, SandboxPID: sb.PID,
		CgroupPath: s.cgroupPath(sb.Config.GetLinux().GetCgroupParent(), id),
		OOMMin:     s.oom, SeccompRoot: filepath.Join(s.cfg.RootDir, "seccomp"), RRO: s.feat.RRO,
		Hostname: sb.Config.GetHostname(), ImageName: cfg.GetImage().GetUserSpecifiedImage(),
	}
	if in.Hostname == "" {
		if in.Hostname, err = os.Hostname(); err != nil {
			return nil, toStatus(err, "hostname")
		}
	}
	imgName := cfg.GetImage().GetImage()
	if len(img.Tags) > 0 {
		imgName = img.Tags[0]
	}
	if in.ImageName == "" {
		in.ImageName = imgName
	}
	// A sandbox made by a shim without shared /dev/shm has no mount there:
	// its containers keep their own, as before.
	if shm := s.sandboxShm(sb.ID); fileExists(shm) {
		in.SandboxShm = shm
	}
	if t := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId(); t != "" {
		tc, err := s.getContainer(ctx, t)
		if err != nil {
			return nil, err
		}
		in.TargetPID = tc.PID
	}
	opts, err := containerSpecOpts(in)
	if err != nil {
		return nil, toStatus(err, "container spec")
	}
	// The runc shim serves every task of one group from one process: the
	// container joins its Pod's shim instead of starting a shim of its own.
	opts = append(opts, oci.WithAnnotations(map[string]string{annSandboxID: sb.ID}))
	// The Pod's user namespace (validated when the sandbox ran).
	userns, err := parseUserns(sb.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return nil, toStatus(err, "container user namespace")
	}
	opts = append(opts, userns.specOpts(sb.PID)...)
	opts = append(opts, userOpts(cfg.GetLinux().GetSecurityContext(), ispec.Config.User)...)
	ext, err := typeurl.MarshalAny(cfg)
	if err != nil {
		return nil, toStatus(err, "encode container config")
	}
	logPath := ""
	if d, p := sb.Config.GetLogDirectory(), cfg.GetLogPath(); d != "" && p != "" {
		logPath = filepath.Join(d, p)
	}
	labels := map[string]string{labelKind: kindContainer, labelName: name, labelSandboxID: sb.ID, labelCreated: nowNanos(),
		labelLogPath: logPath, labelImageRef: img.ID, labelImageName: imgName}
	opts = append(opts, withUserLabel(labels)) // last: see withUserLabel
	tin := taskInputs{snapshotter: s.cfg.Snapshotter, snapshotKey: id}
	opts = append(opts, withTaskInputs(&tin))
	cimg := img.ImageConfig // config reads cached
	var rec containers.Container
	_, err = s.client.NewContainer(cctx, id,
		containerd.WithImage(cimg),
		containerd.WithSnapshotter(s.cfg.Snapshotter),
		s.withNewSnapshot(id, cimg, &tin, userns.snapshotOpts()...),
		containerd.WithRuntime(s.cfg.RuntimeType, s.runcOptions()),
		// The task joins the pause task's shim directly (see RunPodSandbox);
		// a sandbox made before it had a record falls back to the shim binary.
		containerd.WithSandbox(sb.ID),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerLabels(labels),
		containerd.WithContainerExtension(extContainerCfg, ext),
		captureMeta(&rec),
	)
	if err != nil {
		return nil, toStatus(err, "create container")
	}
	s.rememberContainer(rec)
	s.keepTaskInputs(id, tin)
	s.emit(ctx, id, sb.ID, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	s.log.Info("container created", zap.String("id", id), zap.String("name", name))
	return &runtime.CreateContainerResponse{ContainerId: id}, nil
}

// userOpts resolves the process user the CRI way: run_as_user /
// run_as_username, else the image's user; then run_as_group and
// supplemental groups. containerd's helpers read the image's /etc/passwd
// and /etc/group from the container's snapshot.
func userOpts(sc *runtime.LinuxContainerSecurityContext, imageUser string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	switch {
	case sc.GetRunAsUser() != nil:
		opts = append(opts, oci.WithUserID(uint32(sc.GetRunAsUser().GetValue())))
	case sc.GetRunAsUsername() != "":
		opts = append(opts, oci.WithUser(sc.GetRunAsUsername()))
	case imageUser != "":
		opts = append(opts, oci.WithUser(imageUser))
	}
	// Neither: the default spec's 0:0, without reading the image's
	// /etc/passwd, as containerd's CRI does.
	if g := sc.GetRunAsGroup(); g != nil {
		gid := uint32(g.GetValue())
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	user := ""
	if sc.GetSupplementalGroupsPolicy() == runtime.SupplementalGroupsPolicy_Strict {
		// Strict: only the CRI's groups, none from the image's /etc/group.
		return append(opts, withSupplementalGIDs(sc.GetSupplementalGroups()))
	}
	if sc.GetRunAsUser() != nil {
		user = strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	} else if sc.GetRunAsUsername() != "" {
		user = sc.GetRunAsUsername()
	} else {
		user = imageUser
	}
	if user == "" {
		user = "0"
	}
	opts = append(opts, oci.WithAdditionalGIDs(user))
	return append(opts, withSupplementalGIDs(sc.GetSupplementalGroups()))
}

// withSupplementalGIDs adds the CRI's supplemental groups and keeps the
// primary group first in the list, as the kernel reports it (id -G).
func withSupplementalGIDs(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		u := &s.Process.User
		gids := []uint32{u.GID}
		for _, g := range u.AdditionalGids {
			if !slices.Contains(gids, g) {
				gids = append(gids, g)
			}
		}
		for _, g := range groups {
			if !slices.Contains(gids, uint32(g)) {
				gids = append(gids, uint32(g))
			}
		}
		u.AdditionalGids = gids
		return nil
	}
}

// withUserLabel records the process identity the spec ended with in
// labels (the map later given to WithContainerLabels), so that
// ContainerStatus reports it without decoding the spec. It must be the last
// spec option: it reads the user the others settled.
func withUserLabel(labels map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process != nil {
			labels[labelUser] = formatUser(s.Process.User)
		}
		return nil
	}
}

func formatUser(u specs.User) string {
	gs := make([]string, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		gs[i] = strconv.FormatUint(uint64(g), 10)
	}
	return fmt.Sprintf("%d:%d:%s", u.UID, u.GID, strings.Join(gs, ","))
}

// parseUser reads formatUser's output; nil when absent or malformed.
func parseUser(v string) *runtime.LinuxContainerUser {
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 {
		return nil
	}
	uid, err1 := strconv.ParseInt(parts[0], 10, 64)
	gid, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil
	}
	u := &runtime.LinuxContainerUser{Uid: uid, Gid: gid}
	if parts[2] != "" {
		for _, g := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseInt(g, 10, 64)
			if err != nil {
				return nil
			}
			u.SupplementalGroups = append(u.SupplementalGroups, n)
		}
	}
	return u
}
