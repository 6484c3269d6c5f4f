package images

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"
)

func fakeSources() *Sources {
	return &Sources{
		Host: fstest.MapFS{
			"bin/busybox":   {Data: []byte("busybox"), Mode: 0o755},
			"usr/bin/pgrep": {Data: []byte("pgrep"), Mode: 0o755},
			"usr/bin/ipcs":  {Data: []byte("ipcs"), Mode: 0o755},
			"bin/bash":      {Data: []byte("bash"), Mode: 0o755},
			"usr/bin/curl":  {Data: []byte("curl"), Mode: 0o755},
			"usr/bin/ss":    {Data: []byte("ss"), Mode: 0o755},
		},
		Applets: []string{"bin/sh", "usr/bin/wget", "bin/busybox", "usr/bin/pgrep"},
		Bin: func(n string) ([]byte, error) {
			switch n {
			case "pause", "webserver", "nnp", "agnhost", "coredns":
				return []byte(n), nil
			}
			return nil, fs.ErrNotExist
		},
	}
}

type fileInfo struct {
	Type     byte
	Mode     int64
	UID, GID int
	Data     string
	Link     string
}

// flatten applies an image's layers in order, as an extractor would.
func flatten(t *testing.T, img v1.Image) map[string]fileInfo {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fileInfo{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(tr)
			out[filepath.Clean(h.Name)] = fileInfo{Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Data: string(data), Link: h.Linkname}
		}
		rc.Close()
	}
	return out
}

func specByFile(t *testing.T, specs []Spec, file string) Spec {
	t.Helper()
	for _, s := range specs {
		if s.File == file {
			return s
		}
	}
	t.Fatalf("no spec %s", file)
	return Spec{}
}

func TestBusyboxAndNonewprivsContents(t *testing.T) {
	specs, err := Specs(fakeSources())
	if err != nil {
		t.Fatal(err)
	}
	img, err := specByFile(t, specs, "nonewprivs").Image()
	if err != nil {
		t.Fatal(err)
	}
	got := flatten(t, img)
	dir := func(m int64) fileInfo { return fileInfo{Type: tar.TypeDir, Mode: m} }
	want := map[string]fileInfo{
		"bin":               dir(0o755),
		"sbin":              dir(0o755),
		"usr":               dir(0o755),
		"usr/bin":           dir(0o755),
		"usr/sbin":          dir(0o755),
		"usr/local":         dir(0o755),
		"usr/local/bin":     dir(0o755),
		"etc":               dir(0o755),
		"root":              dir(0o700),
		"home":              dir(0o755),
		"var":               dir(0o755),
		"var/run":           dir(0o755),
		"var/www":           dir(0o755),
		"tmp":               dir(0o1777),
		"proc":              dir(0o555),
		"sys":               dir(0o555),
		"dev":               dir(0o755),
		"etc/passwd":        {Type: tar.TypeReg, Mode: 0o644, Data: passwd},
		"etc/group":         {Type: tar.TypeReg, Mode: 0o644, Data: group},
		"bin/busybox":       {Type: tar.TypeReg, Mode: 0o755, Data: "busybox"},
		"usr/bin/pgrep":     {Type: tar.TypeReg, Mode: 0o755, Data: "pgrep"},
		"usr/bin/ipcs":      {Type: tar.TypeReg, Mode: 0o755, Data: "ipcs"},
		"bin/sh":            {Type: tar.TypeLink, Mode: 0o755, Link: "bin/busybox"},
		"usr/bin/wget":      {Type: tar.TypeLink, Mode: 0o755, Link: "bin/busybox"},
		"usr/local/bin/nnp": {Type: tar.TypeReg, Mode: 0o4755, Data: "nnp"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nonewprivs files (-want +got):\n%s", diff)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	wantCfg := v1.Config{
		Entrypoint: []string{"/usr/local/bin/nnp"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}
	if diff := cmp.Diff(wantCfg, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
}

func TestAgnhostContents(t *testing.T) {
	specs, err := Specs(fakeSources())
	if err != nil {
		t.Fatal(err)
	}
	img, err := specByFile(t, specs, "agnhost").Image()
	if err != nil {
		t.Fatal(err)
	}
	got := flatten(t, img)
	for p, want := range map[string]fileInfo{
		"agnhost":        {Type: tar.TypeReg, Mode: 0o755, Data: "agnhost"},
		"bin/bash":       {Type: tar.TypeReg, Mode: 0o755, Data: "bash"},
		"usr/bin/curl":   {Type: tar.TypeReg, Mode: 0o755, Data: "curl"},
		"usr/bin/ss":     {Type: tar.TypeReg, Mode: 0o755, Data: "ss"},
		"bin/sh":         {Type: tar.TypeLink, Mode: 0o755, Link: "bin/busybox"},
		"etc/os-release": {Type: tar.TypeReg, Mode: 0o644, Data: alpineRelease},
	} {
		if diff := cmp.Diff(want, got[p]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", p, diff)
		}
	}
	cf, _ := img.ConfigFile()
	if diff := cmp.Diff([]string{"/agnhost"}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
}

func TestCritestImagesNeedNoKubernetesBuild(t *testing.T) {
	src := fakeSources()
	bin := src.Bin
	src.Bin = func(n string) ([]byte, error) {
		if n == "agnhost" || n == "coredns" {
			return nil, fs.ErrNotExist
		}
		return bin(n)
	}
	dir := t.TempDir()
	if _, err := Build(context.Background(), zap.NewNop(), src, dir, CritestImages...); err != nil {
		t.Fatalf("critest images: %v", err)
	}
	if _, err := Build(context.Background(), zap.NewNop(), src, dir, "agnhost"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("agnhost without its binary: %v, want fs.ErrNotExist", err)
	}
}

func TestImagesAreReproducibleAndDistinct(t *testing.T) {
	digests := func() map[string]string {
		specs, err := Specs(fakeSources())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, s := range specs {
			img, err := s.Image()
			if err != nil {
				t.Fatal(err)
			}
			// The image ID (config digest) is what CRI reports per image.
			d, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			out[s.File] = d.String()
		}
		return out
	}
	a, b := digests(), digests()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("two builds differ (-first +second):\n%s", diff)
	}
	seen := map[string]string{}
	for f, d := range a {
		if other, dup := seen[d]; dup {
			t.Errorf("%s and %s are the same image; critest needs them distinct", f, other)
		}
		seen[d] = f
	}
}

func TestWriteTagsEveryName(t *testing.T) {
	specs, err := Specs(fakeSources())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := Build(context.Background(), zap.NewNop(), fakeSources(), dir); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		f := filepath.Join(dir, s.File+".tar")
		m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(f) })
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range m {
			got = append(got, d.RepoTags...)
		}
	}
	sort.Strings(got)
	want := []string{
		"docker.io/library/busybox:1.37.0",
		"docker.io/library/busybox:latest",
		"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
		"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
		"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
		"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
		"registry.k8s.io/coredns/coredns:v1.14.1",
		"registry.k8s.io/coredns/coredns:v1.14.7",
		"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
		"registry.k8s.io/e2e-test-images/busybox:1.29-2",
		"registry.k8s.io/e2e-test-images/busybox:1.29-4",
		"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
		"registry.k8s.io/e2e-test-images/httpd:2.4.38-4",
		"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
		"registry.k8s.io/e2e-test-images/nginx:1.14-2",
		"registry.k8s.io/e2e-test-images/nginx:1.14-4",
		"registry.k8s.io/e2e-test-images/nginx:1.15-4",
		"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
		"registry.k8s.io/pause:3.10",
		"registry.k8s.io/pause:3.10.2",
		"registry.k8s.io/pause:3.9",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	// A second build rewrites nothing.
	before, _ := os.Stat(filepath.Join(dir, "busybox.tar"))
	if _, err := Build(context.Background(), zap.NewNop(), fakeSources(), dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, "busybox.tar"))
	if !before.ModTime().Equal(after.ModTime()) {
		t.Error("second build rewrote busybox.tar")
	}
}

func TestRegistryServesUpstreamPaths(t *testing.T) {
	dir := t.TempDir()
	if _, err := Build(context.Background(), zap.NewNop(), fakeSources(), dir); err != nil {
		t.Fatal(err)
	}
	files, err := Archives(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := Serve(ctx, zap.NewNop(), "127.0.0.1:0", files)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop(ctx)
	// What containerd asks a mirror for: the repository path without the host.
	for _, ref := range []string{"pause:3.10.2", "e2e-test-images/busybox:1.29-2", "k8s-staging-cri-tools/test-image-tags:3", "library/busybox:latest"} {
		if _, err := remoteImage(r.Addr + "/" + ref); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if _, err := Serve(ctx, zap.NewNop(), "0.0.0.0:0", nil); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("non-loopback address: %v, want ErrNotLoopback", err)
	}
}

func remoteImage(ref string) (v1.Image, error) {
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return remoteGet(tag)
}

func TestNeededLibsOfHostBusybox(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs Debian's busybox (apt package busybox)")
	}
	es, err := HostBinary(os.DirFS("/"), "bin/busybox", "bin/busybox", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es[1:] {
		got = append(got, e.Path)
	}
	// Debian 12's busybox links libresolv and libc; libc names the loader
	// too, which is found by name in the library directory.
	want := []string{"lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libresolv.so.2", "lib64/ld-linux-x86-64.so.2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("libraries (-want +got):\n%s", diff)
	}
}

func remoteGet(tag name.Tag) (v1.Image, error) {
	img, err := remote.Image(tag)
	if err != nil {
		return nil, err
	}
	_, err = img.Layers()
	return img, err
}
