// Command listcost compares client-go's two ways of filling an informer's
// cache, as the proxy's Service and EndpointSlice informers do at start:
// the streaming watch-list (feature gate WatchListClient, on by default)
// and the plain LIST. Against a real API server (control plane on free
// ports) holding N Services with one EndpointSlice of E endpoints each, it
// alternates the two for a few rounds and prints, per round, the time to
// caches synced, this process's CPU and bytes allocated. An experiment for
// the proxy's start-up cost (issue 6), not in make bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/features"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodesuite/nodesuite/e2e/bench/proxy-ipvs/svcload"
	"github.com/nodesuite/nodesuite/e2e/harness/controlplane"
)

const namespace = "bench"

// gates turns WatchListClient to watchList and leaves the rest as they were.
type gates struct {
	features.Gates
	watchList bool
}

func (g gates) Enabled(k features.Feature) bool {
	if k == features.WatchListClient {
		return g.watchList
	}
	return g.Gates.Enabled(k)
}

func main() {
	n := flag.Int("n", 3000, "Services")
	endpoints := flag.Int("endpoints", 10, "endpoints per Service")
	rounds := flag.Int("rounds", 3, "rounds of each way")
	dir := flag.String("dir", "/tmp/ipvs2-listcost", "the control plane's directory")
	flag.Parse()
	if err := run(*n, *endpoints, *rounds, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "listcost:", err)
		os.Exit(1)
	}
}

func run(n, endpoints, rounds int, dir string) error {
	log, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.InfoLevel))
	ctx := context.Background()
	_ = os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(ctx, controlplane.Options{Dir: dir, Log: log})
	if err != nil {
		return err
	}
	defer cp.Stop()
	cfg, err := cp.RESTConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 2000, 2000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	t0 := time.Now()
	if err := svcload.Populate(ctx, c, namespace, 0, n, endpoints); err != nil {
		return err
	}
	log.Info("written", zap.Int("services", n), zap.Duration("took", time.Since(t0)))
	base := features.FeatureGates()
	fmt.Printf("%-10s %5s %10s %10s %12s\n", "way", "round", "synced s", "CPU s", "alloc MB")
	for r := range rounds {
		for i, wl := range []bool{true, false} {
			if r%2 == 1 {
				wl = i == 1 // alternate which goes first
			}
			features.ReplaceFeatureGates(gates{Gates: base, watchList: wl})
			d, cpu, alloc, err := fill(ctx, cfg)
			if err != nil {
				return err
			}
			way := "list"
			if wl {
				way = "watchlist"
			}
			fmt.Printf("%-10s %5d %10.2f %10.2f %12.1f\n", way, r, d.Seconds(), cpu, float64(alloc)/(1<<20))
		}
	}
	return nil
}

// fill starts Service and EndpointSlice informers on a fresh client and
// waits for their caches.
func fill(ctx context.Context, cfg *rest.Config) (time.Duration, float64, uint64, error) {
	runtime.GC()
	c, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return 0, 0, 0, err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	alloc0, cpu0, t0 := ms.TotalAlloc, cpuSeconds(), time.Now()
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(namespace))
	f.Core().V1().Services().Informer()
	f.Discovery().V1().EndpointSlices().Informer()
	stop := make(chan struct{})
	f.Start(stop)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			close(stop)
			return 0, 0, 0, fmt.Errorf("%v never synced", typ)
		}
	}
	d, cpu := time.Since(t0), cpuSeconds()-cpu0
	runtime.ReadMemStats(&ms)
	close(stop)
	f.Shutdown()
	return d, cpu, ms.TotalAlloc - alloc0, nil
}

func cpuSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
