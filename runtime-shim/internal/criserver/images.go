package criserver

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An image is stored as up to three containerd image records sharing one
// target, as containerd's CRI does: its tag ("repo:tag"), its digest
// ("repo@sha256:..") and its ID (the config digest "sha256:..").

// normalizeRef turns "busybox" into "docker.io/library/busybox:latest".
func normalizeRef(ref string) (string, error) {
	n, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("%w: image %q: %w", errInvalidSpec, ref, err)
	}
	return n.String(), nil
}

// criImage is one logical image: all records whose target shares a config.
type criImage struct {
	ID          string
	Tags        []string
	Digests     []string
	Target      images.Image
	Size        int64
	Pinned      bool
	Username    string
	ImageConfig containerd.Image
}

// imageIndex groups the managed records by image ID.
func (s *Service) imageIndex(ctx context.Context) (map[string]*criImage, error) {
	ctx = s.ctx(ctx)
	recs, err := s.client.ImageService().List(ctx)
	if err != nil {
		return nil, err
	}
	return s.groupImages(ctx, recs, true), nil
}

// groupImages groups image records by image ID (the config digest);
// sized: also add up each image's size (reads its manifest).
func (s *Service) groupImages(ctx context.Context, recs []images.Image, sized bool) map[string]*criImage {
	byID := map[string]*criImage{}
	for _, r := range recs {
		img, err := s.image(ctx, containerd.NewImage(s.client, r))
		if err != nil {
			continue // content gone; not a usable image
		}
		cd, _ := img.Config(ctx)
		id := cd.Digest.String()
		ci := byID[id]
		if ci == nil {
			ci = &criImage{ID: id, Target: r, ImageConfig: img}
			byID[id] = ci
		}
		switch {
		case r.Name == id:
		case strings.Contains(r.Name, "@"):
			ci.Digests = append(ci.Digests, r.Name)
		default:
			ci.Tags = append(ci.Tags, r.Name)
		}
	}
	for _, ci := range byID {
		sort.Strings(ci.Tags)
		sort.Strings(ci.Digests)
		if sized {
			if sz, err := ci.ImageConfig.Size(ctx); err == nil {
				ci.Size = sz
			}
		}
		ci.Pinned = ci.Target.Labels["io.cri-containerd.pinned"] == "pinned"
	}
	return byID
}

// findImage resolves a tag, digest reference, full ID or ID prefix.
func (s *Service) findImage(ctx context.Context, ref string) (*criImage, error) {
	idx, err := s.imageIndex(ctx)
	if err != nil {
		return nil, err
	}
	if ci, ok := idx[ref]; ok {
		return ci, nil
	}
	if !strings.Contains(ref, ":") || isHexPrefix(ref) {
		var found *criImage
		for id, ci := range idx {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), strings.TrimPrefix(ref, "sha256:")) {
				if found != nil {
					found = nil
					break
				}
				found = ci
			}
		}
		if found != nil {
			return found, nil
		}
	}
	norm, err := normalizeRef(ref)
	if err != nil {
		return nil, errdefs.ErrNotFound
	}
	for _, ci := range idx {
		for _, n := range append(append([]string{}, ci.Tags...), ci.Digests...) {
			if n == norm {
				return ci, nil
			}
		}
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// containerImage resolves a container's image: findImage's answer, read
// without listing every image when the reference is a plain name.
// (ImageStatus and RemoveImage keep the full index: they must see every
// record of the image.)
func (s *Service) containerImage(ctx context.Context, ref string) (*criImage, error) {
	if ci, err, ok := s.findImageByName(ctx, ref); ok {
		return ci, err
	}
	return s.findImage(ctx, ref)
}

// findImageByName resolves a reference that can only be a name (it cannot
// be an ID or ID prefix: it holds a character no digest has) by reading
// that one record and the records sharing its target, instead of every
// image on the node. ok is false when ref needs the full index.
func (s *Service) findImageByName(ctx context.Context, ref string) (_ *criImage, _ error, ok bool) {
	if !strings.ContainsFunc(strings.TrimPrefix(ref, "sha256:"), func(r rune) bool {
		return !strings.ContainsRune("0123456789abcdef", r)
	}) {
		return nil, nil, false
	}
	norm, err := normalizeRef(ref)
	if err != nil {
		return nil, nil, false // the full path decides, as before
	}
	ctx = s.ctx(ctx)
	rec, err := s.client.ImageService().Get(ctx, norm)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound), true
	} else if err != nil {
		return nil, err, true
	}
	// Records of one image share its target (see the note on criImage);
	// one whose target differs but whose config is the same would be
	// missed here, so the full index settles any doubt.
	recs, err := s.client.ImageService().List(ctx, fmt.Sprintf("target.digest==%q", rec.Target.Digest.String()))
	if err != nil {
		return nil, err, true
	}
	for _, ci := range s.groupImages(ctx, recs, false) { // a container needs no size
		for _, n := range append(append([]string{}, ci.Tags...), ci.Digests...) {
			if n == norm {
				return ci, nil, true
			}
		}
	}
	return nil, nil, false
}

// unpacked makes sure the image has a snapshot chain (an image imported
// rather than pulled may not).
func (s *Service) unpacked(ctx context.Context, ci *criImage) (containerd.Image, error) {
	img := ci.ImageConfig // ci.Target's image, config reads cached
	ok, err := img.IsUnpacked(ctx, s.cfg.Snapshotter)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := img.Unpack(ctx, s.cfg.Snapshotter); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// withNewSnapshot prepares the container's rootfs snapshot, unpacking the
// image first only when its snapshot chain is missing (an image imported
// rather than pulled), as containerd's CRI does: the usual create then
// skips the separate IsUnpacked check, one round trip less.
func (s *Service) withNewSnapshot(id string, img containerd.Image, into *taskInputs, opts ...snapshots.Opt) containerd.NewContainerOpts {
	f := containerd.WithNewSnapshot(id, img, opts...)
	if len(opts) == 0 {
		// Without ID-remapping options, prepare the snapshot directly:
		// containerd.WithNewSnapshot asks the introspection service for the
		// snapshotter's capabilities first (a round trip per container),
		// and drops the mounts that Prepare returns, which StartContainer
		// would otherwise ask for again.
		f = func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
			diffIDs, err := img.RootFS(ctx)
			if err != nil {
				return err
			}
			if c.Snapshotter == "" {
				return fmt.Errorf("container %s: no snapshotter: %w", id, errInvalidSpec)
			}
			mounts, err := client.SnapshotService(c.Snapshotter).Prepare(ctx, id, identity.ChainID(diffIDs).String())
			if err != nil {
				return err
			}
			c.SnapshotKey, c.Image = id, img.Name()
			into.mounts = mounts
			return nil
		}
	}
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		err := f(ctx, client, c)
		if !errdefs.IsNotFound(err) {
			return err
		}
		if err := img.Unpack(ctx, s.cfg.Snapshotter); err != nil {
			return fmt.Errorf("unpack image: %w", err)
		}
		return f(ctx, client, c)
	}
}

func isHexPrefix(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) < 3 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func (s *Service) toCRIImage(ctx context.Context, ci *criImage) *runtime.Image {
	img := &runtime.Image{Id: ci.ID, RepoTags: ci.Tags, RepoDigests: ci.Digests, Size: uint64(ci.Size), Pinned: ci.Pinned}
	if spec, err := ci.ImageConfig.Spec(s.ctx(ctx)); err == nil {
		user := spec.Config.User
		uidPart, _, _ := strings.Cut(user, ":")
		var uid int64
		if _, err := fmt.Sscanf(uidPart, "%d", &uid); err == nil && fmt.Sprint(uid) == uidPart {
			img.Uid = &runtime.Int64Value{Value: uid}
		} else {
			img.Username = uidPart
		}
	}
	return img
}

// credentials turns CRI AuthConfig into a resolver credentials callback.
func credentials(auth *runtime.AuthConfig) func(host string) (string, string, error) {
	return func(host string) (string, string, error) {
		if auth == nil {
			return "", "", nil
		}
		if auth.GetIdentityToken() != "" {
			return "", auth.GetIdentityToken(), nil
		}
		if auth.GetAuth() != "" {
			b, err := base64.StdEncoding.DecodeString(auth.GetAuth())
			if err != nil {
				return "", "", status.Errorf(codes.InvalidArgument, "auth.auth: %v", err)
			}
			u, p, ok := strings.Cut(string(b), ":")
			if !ok {
				return "", "", status.Errorf(codes.InvalidArgument, "auth.auth: not user:password")
			}
			return u, p, nil
		}
		return auth.GetUsername(), auth.GetPassword(), nil
	}
}
