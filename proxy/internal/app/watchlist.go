package app

import (
	"sync"

	"k8s.io/client-go/features"
)

// listGates is client-go's feature gates with WatchListClient off.
type listGates struct{ features.Gates }

func (g listGates) Enabled(k features.Feature) bool {
	return k != features.WatchListClient && g.Gates.Enabled(k)
}

var plainListOnce sync.Once

// usePlainList makes this process's informers fill their caches with one
// LIST instead of client-go's streaming watch-list (on by default since
// v0.35): at start the proxy lists every Service and EndpointSlice, and the
// watch-list's per-object event path cost about twice the CPU and time of
// one LIST (e2e/bench/proxy-ipvs/listcost: 5,000 Services, 0.19 vs 0.37 s
// CPU), which matters on a busy node. Other gates stay as client-go's
// defaults and KUBE_FEATURE_* make them. Before any client is built, so
// nothing has read the gates yet; once, so tests running Run again do not
// wrap twice.
func usePlainList() {
	plainListOnce.Do(func() { features.ReplaceFeatureGates(listGates{features.FeatureGates()}) })
}
