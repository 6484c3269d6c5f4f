package criserver

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// imageMeta is what an image's target (an index or manifest, addressed by
// its digest) resolves to on this node's platform: its config descriptor
// and the config itself. Content addressed by digest never changes, so
// each target is read from containerd's content store once and kept,
// as containerd's CRI keeps its image configs in memory.
type imageMeta struct {
	config ocispec.Descriptor
	spec   ocispec.Image
	chain  string // chain ID of the rootfs: the snapshot an unpacked image has
}

// maxImageMetas bounds the cache; past it the cache starts over (targets
// are few on a node, and a miss only costs the reads it saves).
const maxImageMetas = 512

type imageMetas struct {
	mu sync.Mutex
	m  map[digest.Digest]*imageMeta
}

// get returns img's meta, reading it on a miss.
func (c *imageMetas) get(ctx context.Context, img containerd.Image) (*imageMeta, error) {
	key := img.Target().Digest
	c.mu.Lock()
	m := c.m[key]
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	desc, err := img.Config(ctx)
	if err != nil {
		return nil, err
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), desc)
	if err != nil {
		return nil, fmt.Errorf("read image config %s: %w", desc.Digest, err)
	}
	m = &imageMeta{config: desc}
	if err := json.Unmarshal(blob, &m.spec); err != nil {
		return nil, fmt.Errorf("decode image config %s: %w", desc.Digest, err)
	}
	m.chain = identity.ChainID(m.spec.RootFS.DiffIDs).String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxImageMetas {
		c.m = map[digest.Digest]*imageMeta{}
	}
	c.m[key] = m
	return m, nil
}

// metaImage is a containerd image whose config reads come from its
// imageMeta; every other method (size, unpack, content) is containerd's.
// containerd.WithNewSnapshot takes the rootfs from RootFS, so a container
// created from it reads no image content either.
type metaImage struct {
	containerd.Image
	meta   *imageMeta
	client *containerd.Client
}

func (i metaImage) Config(context.Context) (ocispec.Descriptor, error) { return i.meta.config, nil }

func (i metaImage) Spec(context.Context) (ocispec.Image, error) { return i.meta.spec, nil }

func (i metaImage) RootFS(context.Context) ([]digest.Digest, error) {
	return i.meta.spec.RootFS.DiffIDs, nil
}

// IsUnpacked asks the snapshotter for the rootfs snapshot: snapshots come
// and go (unpack, garbage collection), so this one is never cached.
func (i metaImage) IsUnpacked(ctx context.Context, snapshotter string) (bool, error) {
	if _, err := i.client.SnapshotService(snapshotter).Stat(ctx, i.meta.chain); err != nil {
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// image wraps a record as a containerd image with cached config reads.
func (s *Service) image(ctx context.Context, img containerd.Image) (containerd.Image, error) {
	m, err := s.imageMetas.get(ctx, img)
	if err != nil {
		return nil, err
	}
	return metaImage{Image: img, meta: m, client: s.client}, nil
}
