package criserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/image-spec/identity"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image volumes (KEP-4639), as containerd's CRI: each image a Pod mounts is
// a read-only snapshot view of the image's layers, mounted once per Pod
// under the root dir and bind-mounted into containers from there. A lease
// named after the sandbox keeps the views from containerd's GC until the
// sandbox is removed.

func (s *Service) imageVolumesDir(sandboxID string) string {
	return filepath.Join(s.cfg.RootDir, "image-volumes", sandboxID)
}

func imageVolumeLease(sandboxID string) string { return "runtime-shim-image-volumes-" + sandboxID }

// resolveImageVolumes returns cfg with every image mount turned into a
// bind mount of the mounted image (host path filled in, image_ref set for
// ContainerStatus); cfg itself is left alone. Without image mounts it is cfg.
func (s *Service) resolveImageVolumes(ctx context.Context, sandboxID string, cfg *runtime.ContainerConfig) (*runtime.ContainerConfig, error) {
	has := false
	for _, m := range cfg.GetMounts() {
		has = has || m.GetImage() != nil
	}
	if !has {
		return cfg, nil
	}
	out := proto.Clone(cfg).(*runtime.ContainerConfig)
	for i, m := range out.GetMounts() {
		if m.GetImage() == nil {
			continue
		}
		if err := checkImageMount(i, m); err != nil {
			return nil, err
		}
		root, imageID, err := s.mountImageVolume(ctx, sandboxID, m.GetImage().GetImage())
		if err != nil {
			return nil, fmt.Errorf("mounts[%d]: image volume %q: %w", i, m.GetImage().GetImage(), err)
		}
		host := root
		if sub := m.GetImageSubPath(); sub != "" {
			if host, err = imageSubPath(root, sub); err != nil {
				return nil, fmt.Errorf("%w: mounts[%d]: %w", errInvalidSpec, i, err)
			}
		}
		m.HostPath = host
		m.Image.ImageRef = imageID
	}
	return out, nil
}

func checkImageMount(i int, m *runtime.Mount) error {
	switch {
	case m.GetHostPath() != "":
		return fmt.Errorf("%w: mounts[%d]: an image volume takes no host path", errInvalidSpec, i)
	case !m.GetReadonly():
		return fmt.Errorf("%w: mounts[%d]: an image volume must be read-only", errInvalidSpec, i)
	case m.GetImage().GetImage() == "":
		return fmt.Errorf("%w: mounts[%d]: image volume without an image", errInvalidSpec, i)
	}
	return nil
}

// imageSubPath is root/sub, which must exist and stay inside root (no ..
// or symlink leading out).
func imageSubPath(root, sub string) (string, error) {
	p := filepath.Join(root, filepath.Clean("/"+sub))
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("image volume sub path %q: %w", sub, err)
	}
	if resolved != root && !strings.HasPrefix(resolved, root+string(filepath.Separator)) {
		return "", fmt.Errorf("image volume sub path %q leads out of the image", sub)
	}
	return resolved, nil
}

// mountImageVolume mounts ref's layers read-only for the sandbox (once) and
// returns the mount point and the image ID.
func (s *Service) mountImageVolume(ctx context.Context, sandboxID, ref string) (string, string, error) {
	ci, err := s.findImage(ctx, ref)
	if err != nil {
		return "", "", err
	}
	cctx := s.ctx(ctx)
	img, err := s.unpacked(cctx, ci)
	if err != nil {
		return "", "", fmt.Errorf("unpack: %w", err)
	}
	target := filepath.Join(s.imageVolumesDir(sandboxID), img.Target().Digest.Encoded())
	if mounted, err := isMountPoint(target); err != nil || mounted {
		return target, ci.ID, err
	}
	lease := imageVolumeLease(sandboxID)
	if _, err := s.client.LeasesService().Create(cctx, leases.WithID(lease)); err != nil && !errdefs.IsAlreadyExists(err) {
		return "", "", fmt.Errorf("lease: %w", err)
	}
	lctx := leases.WithLease(cctx, lease)
	diffIDs, err := img.RootFS(lctx)
	if err != nil {
		return "", "", fmt.Errorf("image layers: %w", err)
	}
	sn := s.client.SnapshotService(s.cfg.Snapshotter)
	mounts, err := sn.View(lctx, target, identity.ChainID(diffIDs).String())
	if errdefs.IsAlreadyExists(err) {
		mounts, err = sn.Mounts(lctx, target)
	}
	if err != nil {
		return "", "", fmt.Errorf("snapshot view: %w", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", "", err
	}
	if err := mount.All(mounts, target); err != nil {
		_ = mount.UnmountAll(target, 0)
		return "", "", fmt.Errorf("mount: %w", err)
	}
	return target, ci.ID, nil
}

func isMountPoint(p string) (bool, error) {
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	info, err := mount.Lookup(p)
	if err != nil {
		return false, err
	}
	return info.Mountpoint == p, nil
}

// removeImageVolumes unmounts the sandbox's image volumes and drops their
// lease (the views then go with containerd's next GC).
func (s *Service) removeImageVolumes(ctx context.Context, sandboxID string) error {
	dir := s.imageVolumesDir(sandboxID)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := mount.UnmountAll(p, 0); err != nil {
			return fmt.Errorf("unmount image volume %s: %w", p, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	cctx := s.ctx(ctx)
	sn := s.client.SnapshotService(s.cfg.Snapshotter)
	for _, e := range entries {
		if err := sn.Remove(cctx, filepath.Join(dir, e.Name())); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("removing image volume snapshot", zap.String("sandbox", sandboxID), zap.Error(err))
		}
	}
	if err := s.client.LeasesService().Delete(cctx, leases.Lease{ID: imageVolumeLease(sandboxID)}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("image volume lease: %w", err)
	}
	return nil
}
