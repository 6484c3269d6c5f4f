package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"
)

// RegistryAddr is where the cluster's image mirror listens, for as long as
// the cluster runs (Pods created after `up` returns still pull from it).
const RegistryAddr = "127.0.0.1:5111"

// MirroredRegistries are rewritten to the local mirror by containerd.
var MirroredRegistries = []string{"registry.k8s.io", "docker.io", "gcr.io"}

// WriteRegistryHosts writes containerd's hosts.toml layout for every
// mirrored registry.
func WriteRegistryHosts(dir, mirror string) error {
	for _, r := range MirroredRegistries {
		d := filepath.Join(dir, r)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("registry hosts: %w", err)
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(HostsToml(r, "http://"+mirror)), 0o644); err != nil {
			return fmt.Errorf("registry hosts: %w", err)
		}
	}
	return nil
}

// ServeRegistry serves an in-memory registry on addr holding every image of
// the docker archives, under the names they are tagged with, until ctx ends.
// It answers ReadyPath with 200 once every image is pushed.
//
// Upstream names keep their registry host in the archive's tags; the mirror
// stores them by repository path only, which is how containerd asks a
// mirror for them.
func ServeRegistry(ctx context.Context, log *zap.Logger, addr string, archives []string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	var ready atomic.Bool
	srv := &http.Server{Handler: readyHandler(registry.New(registry.Logger(zap.NewStdLog(log))), &ready), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	n := 0
	for _, a := range archives {
		tags, err := archiveTags(a)
		if err != nil {
			return err
		}
		for _, t := range tags {
			src, err := name.NewTag(t)
			if err != nil {
				return fmt.Errorf("registry: %s: %w", a, err)
			}
			img, err := tarball.ImageFromPath(a, &src)
			if err != nil {
				return fmt.Errorf("registry: %s: %w", a, err)
			}
			dst, err := name.NewTag(addr+"/"+src.RepositoryStr()+":"+src.TagStr(), name.Insecure)
			if err != nil {
				return fmt.Errorf("registry: %w", err)
			}
			if err := remote.Write(dst, img, remote.WithContext(ctx)); err != nil {
				return fmt.Errorf("registry: push %s: %w", t, err)
			}
			n++
		}
	}
	log.Info("registry serving", zap.String("addr", addr), zap.Int("images", n))
	ready.Store(true)
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// archiveTags lists the repo:tag names in a docker archive's manifest.
func archiveTags(path string) ([]string, error) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		return nil, fmt.Errorf("registry: %s: %w", path, err)
	}
	var out []string
	for _, d := range m {
		for _, t := range d.RepoTags {
			if !strings.Contains(t, "@") {
				out = append(out, t)
			}
		}
	}
	return out, nil
}

// ReadyPath answers 200 once the registry holds every image.
const ReadyPath = "/nodesuite-ready"

// readyHandler serves ReadyPath from a flag and everything else from h.
func readyHandler(h http.Handler, ready *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ReadyPath {
			if ready.Load() {
				_, _ = io.WriteString(w, "ok\n")
				return
			}
			http.Error(w, "pushing images", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}
