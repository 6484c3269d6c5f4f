package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/images"
	"github.com/nodesuite/nodesuite/e2e/harness/runtime"
)

// RegistryAddr is where the cluster's image mirror listens, for as long as
// the cluster runs (Pods created after `up` returns still pull from it).
const RegistryAddr = "127.0.0.1:5111"

// WriteRegistryHosts writes containerd's hosts.toml layout for every
// mirrored registry (the same files the private runtime stacks use).
func WriteRegistryHosts(dir, mirror string) error {
	for _, r := range runtime.MirroredRegistries {
		d := filepath.Join(dir, r)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("registry hosts: %w", err)
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(runtime.HostsTOML(r, "http://"+mirror)), 0o644); err != nil {
			return fmt.Errorf("registry hosts: %w", err)
		}
	}
	return nil
}

// ServeRegistry serves the image archives from an in-memory registry on
// addr until ctx ends: the local cluster runs it as a process of its own
// (`nodesuite-cluster serve-registry`), because Pods created after `up`
// returns still pull from it. Readiness: images.ReadyPath.
func ServeRegistry(ctx context.Context, log *zap.Logger, addr string, archives []string) error {
	r, err := images.Serve(ctx, log, addr, archives)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return r.Stop(sctx)
	case <-waitDone(r):
		return r.Wait()
	}
}

func waitDone(r *images.Registry) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = r.Wait(); close(ch) }()
	return ch
}
