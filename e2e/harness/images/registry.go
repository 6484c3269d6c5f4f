package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
)

// Registry is go-containerregistry's in-memory registry on 127.0.0.1 holding
// every image archive. Images are stored under their repository path without
// the registry host (registry.k8s.io/pause:3.10.2 is /v2/pause), which is what
// containerd asks a hosts.toml mirror for.
type Registry struct {
	// Addr is host:port it listens on.
	Addr  string
	ready atomic.Bool
	srv   *http.Server
	done  chan error
	once  sync.Once
	err   error
}

// Endpoint is the mirror URL for hosts.toml.
func (r *Registry) Endpoint() string { return "http://" + r.Addr }

// StartRegistry builds any missing image (see Ensure) and serves all of them
// on a free port of 127.0.0.1 until Stop or ctx ends.
func StartRegistry(ctx context.Context, log *zap.Logger, art *artifacts.Artifacts) (*Registry, error) {
	return StartRegistryAt(ctx, log, art, "127.0.0.1:0")
}

// StartRegistryFor serves only the named archives (Spec.File names), e.g.
// CritestImages, so critest does not wait for the Kubernetes build.
func StartRegistryFor(ctx context.Context, log *zap.Logger, art *artifacts.Artifacts, addr string, only ...string) (*Registry, error) {
	files, err := Ensure(ctx, log, art, only...)
	if err != nil {
		return nil, err
	}
	return Serve(ctx, log, addr, files)
}

// StartRegistryAt is StartRegistry on a given address, which must be loopback.
func StartRegistryAt(ctx context.Context, log *zap.Logger, art *artifacts.Artifacts, addr string) (*Registry, error) {
	files, err := Ensure(ctx, log, art)
	if err != nil {
		return nil, err
	}
	return Serve(ctx, log, addr, files)
}

// ErrNotLoopback refuses an address packets could leave the host through.
var ErrNotLoopback = errors.New("registry address must be loopback")

// Serve starts the registry on addr and pushes the images in files to it.
func Serve(ctx context.Context, zlog *zap.Logger, addr string, files []string) (*Registry, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("images: registry address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("images: %w: %q", ErrNotLoopback, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("images: registry: %w", err)
	}
	r := &Registry{Addr: ln.Addr().String(), done: make(chan error, 1)}
	// The registry logs every request; keep it quiet.
	r.srv = &http.Server{Handler: r.withReady(registry.New(registry.Logger(log.New(io.Discard, "", 0)))), ReadHeaderTimeout: 30 * time.Second}
	go func() { r.done <- r.srv.Serve(ln) }()
	if err := r.load(ctx, zlog, files); err != nil {
		_ = r.Stop(context.Background())
		return nil, err
	}
	r.ready.Store(true)
	zlog.Info("registry serving", zap.String("addr", r.Addr), zap.Int("archives", len(files)))
	return r, nil
}

// ReadyPath answers 200 once the registry holds every image: a registry
// run as a separate process (the local cluster's) is waited for through it.
const ReadyPath = "/nodesuite-ready"

func (r *Registry) withReady(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != ReadyPath {
			h.ServeHTTP(w, req)
			return
		}
		if !r.ready.Load() {
			http.Error(w, "pushing images", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// load pushes every tag of every archive.
func (r *Registry) load(ctx context.Context, zlog *zap.Logger, files []string) error {
	for _, f := range files {
		opener := func() (io.ReadCloser, error) { return os.Open(f) }
		m, err := tarball.LoadManifest(opener)
		if err != nil {
			return fmt.Errorf("images: %s: %w", f, err)
		}
		for _, desc := range m {
			for _, t := range desc.RepoTags {
				tag, err := name.NewTag(t)
				if err != nil {
					return fmt.Errorf("images: %s: %w", f, err)
				}
				img, err := tarball.Image(opener, &tag)
				if err != nil {
					return fmt.Errorf("images: %s %s: %w", f, t, err)
				}
				local, err := name.NewTag(r.Addr+"/"+tag.RepositoryStr()+":"+tag.TagStr(), name.Insecure)
				if err != nil {
					return fmt.Errorf("images: %s: %w", t, err)
				}
				if err := remote.Write(local, img, remote.WithContext(ctx)); err != nil {
					return fmt.Errorf("images: push %s: %w", t, err)
				}
			}
		}
		zlog.Debug("registry loaded", zap.String("archive", filepath.Base(f)))
	}
	return nil
}

// Stop shuts the registry down.
func (r *Registry) Stop(ctx context.Context) error {
	r.once.Do(func() {
		r.err = r.srv.Shutdown(ctx)
		if serr := r.Wait(); serr != nil && r.err == nil {
			r.err = serr
		}
	})
	return r.err
}

// Wait blocks until the registry stops.
func (r *Registry) Wait() error {
	err := <-r.done
	r.done <- err
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Archives lists the image archives in dir.
func Archives(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	sort.Strings(files)
	return files, err
}
