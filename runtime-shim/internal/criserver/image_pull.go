package criserver

import (
	"context"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PullImage pulls through containerd with the hosts.toml mirrors of
// --registry-config-dir and the request's credentials, then unpacks.
func (s *Service) PullImage(ctx context.Context, r *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	id, err := s.pull(ctx, r.GetImage().GetImage(), r.GetAuth())
	if err != nil {
		return nil, toStatus(err, "pull image")
	}
	return &runtime.PullImageResponse{ImageRef: id}, nil
}

func (s *Service) pull(ctx context.Context, ref string, auth *runtime.AuthConfig) (string, error) {
	ctx = s.ctx(ctx)
	norm, err := normalizeRef(ref)
	if err != nil {
		return "", err
	}
	hostOpts := dockerconfig.HostOptions{Credentials: credentials(auth)}
	if s.cfg.RegistryConfigDir != "" {
		hostOpts.HostDir = dockerconfig.HostDirFromRoot(s.cfg.RegistryConfigDir)
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: dockerconfig.ConfigureHosts(ctx, hostOpts)})
	img, err := s.client.Pull(ctx, norm,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(s.cfg.Snapshotter),
		containerd.WithPullLabel(labelImageCRI, "managed"))
	if err != nil {
		return "", err
	}
	cd, err := img.Config(ctx)
	if err != nil {
		return "", err
	}
	id := cd.Digest.String()
	names := []string{id}
	if named, err := reference.ParseNormalizedNamed(norm); err == nil {
		if _, isDigest := named.(reference.Canonical); !isDigest {
			names = append(names, named.Name()+"@"+img.Target().Digest.String())
		}
	}
	for _, n := range names {
		rec := images.Image{Name: n, Target: img.Target(), Labels: map[string]string{labelImageCRI: "managed"}}
		if _, err := s.client.ImageService().Create(ctx, rec); errdefs.IsAlreadyExists(err) {
			_, err = s.client.ImageService().Update(ctx, rec, "target", "labels."+labelImageCRI)
			if err != nil {
				return "", err
			}
		} else if err != nil {
			return "", err
		}
	}
	return id, nil
}

// ensureImage returns the image for ref, pulling it if absent (sandbox image).
func (s *Service) ensureImage(ctx context.Context, ref string) (*criImage, error) {
	ci, err := s.containerImage(ctx, ref)
	if err == nil {
		return ci, nil
	}
	if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if _, err := s.pull(ctx, ref, nil); err != nil {
		return nil, err
	}
	return s.containerImage(ctx, ref)
}
