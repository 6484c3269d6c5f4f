package criserver

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
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
	cfg := r.GetConfig()
	id := newID()
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
	img, err := s.findImage(ctx, cfg.GetImage().GetImage())
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
		OOMMin:     s.oom, SeccompRoot: filepath.Join(s.cfg.RootDir, "seccomp"),
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
	opts = append(opts, userOpts(cfg.GetLinux().GetSecurityContext(), ispec.Config.User)...)
	ext, err := typeurl.MarshalAny(cfg)
	if err != nil {
		return nil, toStatus(err, "encode container config")
	}
	logPath := ""
	if d, p := sb.Config.GetLogDirectory(), cfg.GetLogPath(); d != "" && p != "" {
		logPath = filepath.Join(d, p)
	}
	imgName := cfg.GetImage().GetImage()
	if len(img.Tags) > 0 {
		imgName = img.Tags[0]
	}
	labels := map[string]string{labelKind: kindContainer, labelName: name, labelSandboxID: sb.ID, labelCreated: nowNanos(),
		labelLogPath: logPath, labelImageRef: img.ID, labelImageName: imgName}
	cimg, err := s.unpacked(cctx, img)
	if err != nil {
		return nil, toStatus(err, "unpack image")
	}
	_, err = s.client.NewContainer(cctx, id,
		containerd.WithImage(cimg),
		containerd.WithSnapshotter(s.cfg.Snapshotter),
		containerd.WithNewSnapshot(id, cimg),
		containerd.WithRuntime(s.cfg.RuntimeType, s.runcOptions()),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerLabels(labels),
		containerd.WithContainerExtension(extContainerCfg, ext),
	)
	if err != nil {
		return nil, toStatus(err, "create container")
	}
	s.indexContainer(id)
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
	default:
		opts = append(opts, oci.WithUserID(0))
	}
	if g := sc.GetRunAsGroup(); g != nil {
		gid := uint32(g.GetValue())
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	user := ""
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
	if sg := sc.GetSupplementalGroups(); len(sg) > 0 {
		groups := make([]string, len(sg))
		for i, g := range sg {
			groups[i] = strconv.FormatInt(g, 10)
		}
		opts = append(opts, oci.WithAppendAdditionalGroups(groups...))
	}
	return opts
}
