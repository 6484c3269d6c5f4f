package criserver

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// countingImage serves one config blob and counts the content reads.
type countingImage struct {
	containerd.Image // only the methods below are called
	target           ocispec.Descriptor
	config           ocispec.Descriptor
	store            *countingStore
}

func (i *countingImage) Target() ocispec.Descriptor { return i.target }
func (i *countingImage) Config(context.Context) (ocispec.Descriptor, error) {
	i.store.configReads++
	return i.config, nil
}
func (i *countingImage) ContentStore() content.Store { return i.store }

type countingStore struct {
	content.Store
	blob        []byte
	configReads int
	blobReads   int
}

func (s *countingStore) ReaderAt(context.Context, ocispec.Descriptor) (content.ReaderAt, error) {
	s.blobReads++
	return readerAt{bytes.NewReader(s.blob)}, nil
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func TestImageMetasReadOncePerTarget(t *testing.T) {
	diffs := []digest.Digest{digest.FromString("layer1"), digest.FromString("layer2")}
	cfg := ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sleep"}, User: "1000"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffs}}
	blob, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{blob: blob}
	cdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	img := func(target string) *countingImage {
		return &countingImage{target: ocispec.Descriptor{Digest: digest.FromString(target)}, config: cdesc, store: store}
	}
	var c imageMetas
	ctx := context.Background()
	for range 3 {
		m, err := c.get(ctx, img("manifest-a"))
		if err != nil {
			t.Fatal(err)
		}
		want := &imageMeta{config: cdesc, spec: cfg, chain: identity.ChainID(diffs).String()}
		if d := cmp.Diff(want, m, cmp.AllowUnexported(imageMeta{})); d != "" {
			t.Fatalf("meta (-want +got):\n%s", d)
		}
	}
	if _, err := c.get(ctx, img("manifest-b")); err != nil { // another target: read again
		t.Fatal(err)
	}
	got := map[string]int{"config": store.configReads, "blob": store.blobReads}
	if d := cmp.Diff(map[string]int{"config": 2, "blob": 2}, got); d != "" {
		t.Errorf("content reads (-want +got):\n%s", d)
	}
	// A metaImage answers config reads without the store.
	mi := metaImage{Image: img("manifest-a"), meta: c.m[digest.FromString("manifest-a")]}
	if _, err := mi.Spec(ctx); err != nil {
		t.Fatal(err)
	}
	rootfs, err := mi.RootFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(diffs, rootfs); d != "" {
		t.Errorf("rootfs (-want +got):\n%s", d)
	}
	if store.configReads != 2 || store.blobReads != 2 {
		t.Errorf("metaImage read content: config %d blob %d", store.configReads, store.blobReads)
	}
}
