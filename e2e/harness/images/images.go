// Package images assembles the images the suite and critest use without any
// registry: layers are built as tarballs here (from Debian's busybox, the
// harness's own small programs and the upstream binaries the artifacts
// package built), put together with go-containerregistry, written as
// <cache>/images/<name>.tar under their upstream names, and served from
// go-containerregistry's in-memory registry on 127.0.0.1 (registry.go).
package images

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
)

// Upstream names the suite uses.
const (
	Pause        = "registry.k8s.io/pause:3.10.2"
	Busybox      = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	Agnhost      = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	CoreDNS      = "registry.k8s.io/coredns/coredns:v1.14.1"
	criTestImage = "gcr.io/k8s-staging-cri-tools/"
)

// Spec is one image: its layers on top of each other and its config.
type Spec struct {
	// File is the archive's base name: <cache>/images/<File>.tar.
	File string
	// Names are the upstream references (with tags) the image answers to.
	Names  []string
	Layers []Layer
	Config v1.Config
	// missing is why the spec cannot be built (an input not built yet).
	missing error
}

// Sources are the host inputs images are built from.
type Sources struct {
	// Host is the host's root file system (busybox, pgrep, ipcs, libraries).
	Host fs.FS
	// Applets lists busybox's applets as paths relative to / (busybox --list-full).
	Applets []string
	// Bin reads a binary the artifacts package built (pause, webserver,
	// nnp, agnhost, coredns).
	Bin func(name string) ([]byte, error)
}

// HostSources reads the real host and the artifact cache.
func HostSources(ctx context.Context, a *artifacts.Artifacts) (*Sources, error) {
	out, err := exec.CommandContext(ctx, "/bin/busybox", "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("images: busybox --list-full (apt package busybox): %w", err)
	}
	return &Sources{
		Host:    os.DirFS("/"),
		Applets: strings.Fields(string(out)),
		Bin: func(n string) ([]byte, error) {
			for _, d := range []string{a.ImageBinDir, a.BinDir} {
				if b, err := os.ReadFile(filepath.Join(d, n)); err == nil {
					return b, nil
				}
			}
			return nil, fmt.Errorf("images: %s not built (artifacts build): %w", n, fs.ErrNotExist)
		},
	}, nil
}

const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`
	group = `root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
`
	alpineRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.21.0
PRETTY_NAME="Alpine Linux v3.21 (nodesuite stand-in)"
`
)

// BusyboxLayer is Debian's dynamically linked busybox with every applet as a
// hard link (symlinked applets break critest's masked-path specs), pgrep
// and ipcs from procps and util-linux (Debian's busybox has neither), their
// libraries, and a minimal /etc.
func BusyboxLayer(s *Sources) (Layer, error) {
	l := Layer{
		Dir("bin", 0o755), Dir("sbin", 0o755), Dir("usr/bin", 0o755), Dir("usr/sbin", 0o755),
		Dir("etc", 0o755), Dir("root", 0o700), Dir("home", 0o755), Dir("var/run", 0o755),
		Dir("var/www", 0o755), Dir("tmp", 0o1777), Dir("proc", 0o555), Dir("sys", 0o555), Dir("dev", 0o755),
		File("etc/passwd", 0o644, []byte(passwd)),
		File("etc/group", 0o644, []byte(group)),
	}
	bb, err := HostBinary(s.Host, "bin/busybox", "bin/busybox", 0o755)
	if err != nil {
		return nil, err
	}
	l = append(l, bb...)
	have := map[string]bool{}
	for _, e := range l {
		have[e.Path] = true
	}
	for _, tool := range []struct{ src, dst string }{{"usr/bin/pgrep", "usr/bin/pgrep"}, {"usr/bin/ipcs", "usr/bin/ipcs"}} {
		es, err := HostBinary(s.Host, tool.src, tool.dst, 0o755)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			if !have[e.Path] {
				have[e.Path] = true
				l = append(l, e)
			}
		}
	}
	for _, a := range s.Applets {
		a = strings.TrimPrefix(a, "/")
		if a == "" || have[a] {
			continue
		}
		have[a] = true
		l = append(l, Hardlink(a, "bin/busybox", 0o755))
	}
	return l, nil
}

func bin(s *Sources, n, dst string, mode int64) (Entry, error) {
	b, err := s.Bin(n)
	if err != nil {
		return Entry{Path: dst}, err
	}
	return File(dst, mode, b), nil
}

// Specs returns every image the suite and critest use.
func Specs(s *Sources) ([]Spec, error) {
	base, err := BusyboxLayer(s)
	if err != nil {
		return nil, err
	}
	// A missing binary fails only the images that need it, so critest's
	// images build before the Kubernetes ones (agnhost) exist.
	missing := map[string]error{}
	must := func(e Entry, err error) Entry {
		if err != nil {
			missing[e.Path] = err
		}
		return e
	}
	pause := must(bin(s, "pause", "pause", 0o755))
	web := func(dst string) Entry { return must(bin(s, "webserver", dst, 0o755)) }
	var agnhost []Entry
	if b, err := s.Bin("agnhost"); err != nil {
		missing["agnhost"] = err
	} else if agnhost, err = WithLibs(s.Host, "agnhost", b, "agnhost", 0o755); err != nil {
		// Built with cgo, so it brings its libraries.
		missing["agnhost"] = err
	}
	// Tools e2e tests shell out to in agnhost (busybox has nc, wget, ip,
	// nslookup but no bash, curl or ss), with their libraries.
	agnhostTools := Layer{File("etc/os-release", 0o644, []byte(alpineRelease))}
	if missing["agnhost"] == nil {
		have := map[string]bool{}
		for _, e := range base {
			have[e.Path] = true
		}
		for _, tool := range []string{"bin/bash", "usr/bin/curl", "usr/bin/ss"} {
			es, err := HostBinary(s.Host, tool, tool, 0o755)
			if err != nil {
				missing["agnhost"] = err
				break
			}
			for _, e := range es {
				if !have[e.Path] {
					have[e.Path] = true
					agnhostTools = append(agnhostTools, e)
				}
			}
		}
		for _, e := range agnhost {
			if !have[e.Path] {
				have[e.Path] = true
				agnhostTools = append(agnhostTools, e)
			}
		}
	}
	coredns := must(bin(s, "coredns", "coredns", 0o755))
	nnp := must(bin(s, "nnp", "usr/local/bin/nnp", 0o4755))
	index := []byte("<html><body><h1>Welcome to nginx!</h1></body></html>\n")
	e2e := "registry.k8s.io/e2e-test-images/"
	withBase := func(extra ...Entry) []Layer {
		if len(extra) == 0 {
			return []Layer{base}
		}
		return []Layer{base, Layer(extra)}
	}
	nginx := withBase(web("usr/sbin/nginx"), File("usr/share/nginx/html/index.html", 0o644, index), Dir("var/log/nginx", 0o755))
	specs := []Spec{
		{
			File:   "pause",
			Names:  []string{Pause, "registry.k8s.io/pause:3.10"},
			Layers: []Layer{{pause}},
			Config: v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		},
		{
			// critest pulls pause:3.9 from two registries and expects one
			// image, different from the sandbox's 3.10: a label keeps it distinct.
			File:   "pause-3.9",
			Names:  []string{"registry.k8s.io/pause:3.9"},
			Layers: []Layer{{pause}},
			Config: v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535",
				Labels: map[string]string{"io.nodesuite.pause": "3.9"}},
		},
		{
			File:   "busybox",
			Names:  []string{Busybox, e2e + "busybox:1.29-2", e2e + "busybox:1.29-4", "docker.io/library/busybox:1.37.0", "docker.io/library/busybox:latest"},
			Layers: withBase(),
			Config: v1.Config{Cmd: []string{"sh"}},
		},
		{
			File:   "agnhost",
			Names:  []string{Agnhost},
			Layers: []Layer{base, agnhostTools},
			Config: v1.Config{Entrypoint: []string{"/agnhost"}},
		},
		{
			File:   "coredns",
			Names:  []string{CoreDNS, "registry.k8s.io/coredns/coredns:" + artifacts.CoreDNSVersion},
			Layers: []Layer{{coredns}},
			Config: v1.Config{Entrypoint: []string{"/coredns"}, ExposedPorts: ports("53/tcp", "53/udp", "9153/tcp")},
		},
		{
			File:   "nginx",
			Names:  []string{e2e + "nginx:1.14-2", e2e + "nginx:1.14-4", e2e + "nginx:1.15-4"},
			Layers: nginx,
			Config: v1.Config{Entrypoint: []string{"/usr/sbin/nginx"}, ExposedPorts: ports("80/tcp")},
		},
		{
			File:   "hostnet-nginx",
			Names:  []string{criTestImage + "hostnet-nginx-amd64:latest"},
			Layers: nginx,
			Config: v1.Config{Entrypoint: []string{"/usr/sbin/nginx"}, Env: []string{"PORT=12003"}, ExposedPorts: ports("12003/tcp")},
		},
		{
			File:  "httpd",
			Names: []string{e2e + "httpd:2.4.39-4", e2e + "httpd:2.4.38-4"},
			Layers: withBase(web("usr/local/apache2/bin/httpd"),
				File("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))),
			Config: v1.Config{Cmd: []string{"/usr/local/apache2/bin/httpd"}, Env: []string{"ROOT=/usr/local/apache2/htdocs"},
				ExposedPorts: ports("80/tcp")},
		},
		{
			File:   "nonewprivs",
			Names:  []string{e2e + "nonewprivs:1.3"},
			Layers: withBase(nnp),
			Config: v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}},
		},
	}
	// cri-tools' own test images (images/image-test, image-user,
	// image-predefined-group in cri-tools v1.37.0): busybox plus a marker
	// file or a USER.
	for _, n := range []string{"1", "2", "3"} {
		specs = append(specs, Spec{
			File:   "cri-test-image-" + n,
			Names:  []string{criTestImage + "test-image-" + n + ":latest"},
			Layers: withBase(File("test-image-"+n, 0o644, []byte(n+"\n"))),
			Config: v1.Config{Cmd: []string{"sh"}},
		})
	}
	specs = append(specs,
		Spec{
			File:   "cri-test-image-tags",
			Names:  []string{criTestImage + "test-image-tags:1", criTestImage + "test-image-tags:2", criTestImage + "test-image-tags:3"},
			Layers: withBase(File("test-image-tags", 0o644, []byte("tags\n"))),
			Config: v1.Config{Cmd: []string{"sh"}},
		},
		Spec{
			File: "cri-test-image",
			Names: []string{criTestImage + "test-image-latest:latest", criTestImage + "test-image-tag:test",
				criTestImage + "test-image-tag:all"},
			Layers: withBase(File("test-image", 0o644, []byte("test\n"))),
			Config: v1.Config{Cmd: []string{"sh"}},
		},
	)
	for _, u := range []struct{ file, user string }{
		{"user-uid", "1002"}, {"user-username", "www-data"}, {"user-uid-group", "1003:1003"}, {"user-username-group", "www-data:www-data"},
	} {
		specs = append(specs, Spec{
			File:   "cri-test-image-" + u.file,
			Names:  []string{criTestImage + "test-image-" + u.file + ":latest"},
			Layers: withBase(),
			Config: v1.Config{Cmd: []string{"sh"}, User: u.user},
		})
	}
	specs = append(specs, Spec{
		File:  "cri-test-image-predefined-group",
		Names: []string{criTestImage + "test-image-predefined-group:latest"},
		Layers: []Layer{base, {
			// Same files as base but with default-user and its group, as
			// `adduser -u 1000 default-user; addgroup -g 50000 ...` leave them.
			File("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")),
			File("etc/group", 0o644, []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")),
			{Path: "home/default-user", Type: tar.TypeDir, Mode: 0o755, UID: 1000, GID: 1000},
		}},
		Config: v1.Config{Cmd: []string{"sh"}, User: "1000"},
	})
	for i := range specs {
		for _, l := range specs[i].Layers {
			for _, e := range l {
				if err, ok := missing[e.Path]; ok && e.Type == tar.TypeReg {
					specs[i].missing = err
				}
			}
		}
		if specs[i].File == "agnhost" && missing["agnhost"] != nil {
			specs[i].missing = missing["agnhost"]
		}
	}
	return specs, nil
}

func ports(ps ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, p := range ps {
		m[p] = struct{}{}
	}
	return m
}

// Image assembles a spec into an image.
func (s Spec) Image() (v1.Image, error) {
	img := empty.Image
	for i, l := range s.Layers {
		layer, err := l.Build()
		if err != nil {
			return nil, fmt.Errorf("images: %s layer %d: %w", s.File, i, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return nil, fmt.Errorf("images: %s: %w", s.File, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", s.File, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = s.Config
	if len(cf.Config.Env) == 0 || !hasPath(cf.Config.Env) {
		cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, cf.Config.Env...)
	}
	cf.Created = v1.Time{Time: epoch}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("images: %s: %w", s.File, err)
	}
	return img, nil
}

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

// inputHash identifies everything the image is made of.
func (s Spec) inputHash() (string, error) {
	h := sha256.New()
	for _, l := range s.Layers {
		data, err := l.Tar()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "layer %d\n", len(data))
		h.Write(data)
	}
	cfg, err := json.Marshal(s.Config)
	if err != nil {
		return "", fmt.Errorf("images: %s: %w", s.File, err)
	}
	h.Write(cfg)
	return hex.EncodeToString(h.Sum(nil)) + " " + strings.Join(s.Names, " "), nil
}

// Write writes the spec's image as a docker archive tagged with every name.
func (s Spec) Write(img v1.Image, file string) error {
	refs := map[name.Reference]v1.Image{}
	for _, n := range s.Names {
		t, err := name.NewTag(n)
		if err != nil {
			return fmt.Errorf("images: %s: %w", s.File, err)
		}
		refs[t] = img
	}
	tmp := file + ".new"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := tarball.MultiRefWrite(refs, f); err != nil {
		f.Close()
		return fmt.Errorf("images: %s: %w", s.File, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return os.Rename(tmp, file)
}

// Build writes every image that is missing or changed into dir. Images are
// reproducible, so a stamp of each image's digest decides what to rewrite.
func Build(ctx context.Context, log *zap.Logger, s *Sources, dir string, only ...string) ([]Spec, error) {
	all, err := Specs(s)
	if err != nil {
		return nil, err
	}
	var specs []Spec
	for _, sp := range all {
		if len(only) == 0 || slices.Contains(only, sp.File) {
			if sp.missing != nil {
				return nil, fmt.Errorf("images: %s: %w", sp.File, sp.missing)
			}
			specs = append(specs, sp)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	for _, spec := range specs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// The stamp is a hash of the layers' uncompressed tars and the
		// config: checking it costs no compression, so a warm run is quick.
		stamp, err := spec.inputHash()
		if err != nil {
			return nil, err
		}
		file := filepath.Join(dir, spec.File+".tar")
		stampFile := filepath.Join(dir, "."+spec.File+".stamp")
		if old, err := os.ReadFile(stampFile); err == nil && string(old) == stamp {
			if _, err := os.Stat(file); err == nil {
				continue
			}
		}
		img, err := spec.Image()
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", spec.File, err)
		}
		if err := spec.Write(img, file); err != nil {
			return nil, err
		}
		if err := os.WriteFile(stampFile, []byte(stamp), 0o644); err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		log.Info("image written", zap.String("file", file), zap.String("digest", d.String()), zap.Strings("names", spec.Names))
	}
	return specs, nil
}

// Ensure builds the programs images need and every image, and returns the
// archives' paths.
func Ensure(ctx context.Context, log *zap.Logger, a *artifacts.Artifacts, only ...string) ([]string, error) {
	s, err := HostSources(ctx, a)
	if err != nil {
		return nil, err
	}
	specs, err := Build(ctx, log, s, a.ImagesDir, only...)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, sp := range specs {
		files = append(files, filepath.Join(a.ImagesDir, sp.File+".tar"))
	}
	sort.Strings(files)
	return files, nil
}

// Needs are the artifacts Ensure reads.
var Needs = []string{"testimages", "agnhost", "coredns"}

// CritestNeeds are the artifacts the critest images read.
var CritestNeeds = []string{"testimages"}

// CritestImages are the archives critest needs (Spec.File names).
var CritestImages = []string{
	"pause", "pause-3.9", "busybox", "nginx", "hostnet-nginx", "httpd", "nonewprivs",
	"cri-test-image-1", "cri-test-image-2", "cri-test-image-3", "cri-test-image-tags", "cri-test-image",
	"cri-test-image-user-uid", "cri-test-image-user-username", "cri-test-image-user-uid-group",
	"cri-test-image-user-username-group", "cri-test-image-predefined-group",
}
