// Command kubelet-bench measures our kubelet against the upstream kubelet on
// the running local cluster, in one run and on the same runtime: it swaps
// the node's kubelet (nodesuite-cluster swap-kubelet's code) between the
// phases and prints Pod start latency (created -> Running seen by a watch,
// image already present) p50/p99 for single Pods and for a burst, and the
// kubelet's RSS at idle and with the burst running, each as ours/upstream.
// It leaves the node with the kubelet it found. Run under the cluster lock
// (make bench-kubelet brings a cluster up and down around it).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/nodesuite/nodesuite/e2e/harness/artifacts"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
	"github.com/nodesuite/nodesuite/shared/signals"
)

func main() {
	single := flag.Int("single", 20, "Pods started one at a time.")
	burst := flag.Int("burst", 50, "Pods created at once.")
	settle := flag.Duration("settle", 15*time.Second, "Wait before reading the kubelet's RSS.")
	rounds := flag.Int("rounds", 1, "Rounds of both kubelets, alternating which goes first (ABBA), to spread the machine's changing load over both.")
	profiles := flag.String("profiles", "", "Directory to save each kubelet's heap profile (idle and with Pods) in, from its /debug/pprof/heap through the API server's node proxy; empty saves none.")
	flag.Parse()
	ctx, stop := signals.Context(context.Background())
	defer stop()
	log, _ := zap.NewDevelopment()
	if err := run(ctx, log, *single, *burst, *rounds, *settle, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "kubelet-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *zap.Logger, single, burst, rounds int, settle time.Duration, profiles string) error {
	repo, err := artifacts.FindRepo()
	if err != nil {
		return err
	}
	b := &bench{
		log: log, repo: repo, layout: cluster.NewLayout(repo), cache: artifacts.CacheRoot(),
		single: single, burst: burst, settle: settle, profiles: profiles,
	}
	if b.client, err = client(filepath.Join(b.layout.Dir, "admin.kubeconfig")); err != nil {
		return err
	}
	st, err := cluster.LoadState(b.layout.State())
	if err != nil {
		return err
	}
	if st.Kubelet == "" {
		return fmt.Errorf("no local cluster (no kubelet in %s)", b.layout.State())
	}
	first := st.Kubelet
	defer func() {
		if cur, _ := cluster.LoadState(b.layout.State()); cur != nil && cur.Kubelet != first {
			if err := b.swap(context.Background(), first); err != nil {
				log.Error("putting the first kubelet back", zap.Error(err))
			}
		}
	}()
	results := map[cluster.Choice][]result{}
	for round := range max(rounds, 1) {
		order := []cluster.Choice{cluster.Upstream, cluster.Ours}
		if round%2 == 1 {
			order = []cluster.Choice{cluster.Ours, cluster.Upstream}
		}
		for _, k := range order {
			r, err := b.measure(ctx, k)
			if err != nil {
				return fmt.Errorf("round %d, %s kubelet: %w", round+1, k, err)
			}
			results[k] = append(results[k], r)
		}
	}
	report(os.Stdout, merge(results[cluster.Upstream]), merge(results[cluster.Ours]), single, burst, max(rounds, 1))
	return nil
}
