package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	pipvs "github.com/nodesuite/nodesuite/proxy/internal/ipvs"
)

func TestExactly(t *testing.T) {
	ap := netip.MustParseAddrPort
	want := map[netip.AddrPort]bool{ap("10.0.0.1:80"): true, ap("10.0.0.2:80"): true}
	for _, tc := range []struct {
		name string
		aps  []netip.AddrPort
		ok   bool
	}{
		{"same", []netip.AddrPort{ap("10.0.0.2:80"), ap("10.0.0.1:80")}, true},
		{"one missing", []netip.AddrPort{ap("10.0.0.1:80")}, false},
		{"one too many", []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.2:80"), ap("10.0.0.3:80")}, false},
		{"one other", []netip.AddrPort{ap("10.0.0.1:80"), ap("10.0.0.3:80")}, false},
	} {
		var rs []pipvs.RealServer
		for _, a := range tc.aps {
			rs = append(rs, pipvs.RealServer{Addr: a.Addr(), Port: a.Port()})
		}
		if got := exactly(rs, want); got != tc.ok {
			t.Errorf("%s: exactly = %v", tc.name, got)
		}
	}
}

// fakeKernel answers GET_DEST from a function of the Service's index, and
// fails the test when a Service already seen complete is read again.
type fakeKernel struct {
	t        *testing.T
	index    map[pipvs.VSKey]int
	state    func(i int) ([]pipvs.RealServer, error)
	complete map[pipvs.VSKey]bool
}

func (f *fakeKernel) RealServers(k pipvs.VSKey) ([]pipvs.RealServer, error) {
	if f.complete[k] {
		f.t.Errorf("%s read again after it was complete", k)
	}
	rs, err := f.state(f.index[k])
	if err == nil && len(rs) == 1 && rs[0] == real(f.index[k]) {
		f.complete[k] = true
	}
	return rs, err
}

func vsKey(i int) pipvs.VSKey {
	return pipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: netip.AddrFrom4([4]byte{10, 96, 0, byte(i)}), Port: 80}
}

func real(i int) pipvs.RealServer {
	return pipvs.RealServer{Addr: netip.AddrFrom4([4]byte{10, 244, 0, byte(i)}), Port: 8080}
}

var errBroken = fmt.Errorf("broken socket")

// Kernel states by Service index.
var (
	none = func(int) ([]pipvs.RealServer, error) { return nil, fmt.Errorf("vs: %w", pipvs.ErrNotFound) }
	all  = func(i int) ([]pipvs.RealServer, error) { return []pipvs.RealServer{real(i)}, nil }
	from = func(k int) func(int) ([]pipvs.RealServer, error) {
		return func(i int) ([]pipvs.RealServer, error) {
			if i < k {
				return none(i)
			}
			return all(i)
		}
	}
	below = func(k int) func(int) ([]pipvs.RealServer, error) {
		return func(i int) ([]pipvs.RealServer, error) {
			if i >= k {
				return []pipvs.RealServer{}, nil // the virtual server, no real server yet
			}
			return all(i)
		}
	}
	extra  = func(i int) ([]pipvs.RealServer, error) { return []pipvs.RealServer{real(i), real(i + 100)}, nil }
	broken = func(int) ([]pipvs.RealServer, error) { return nil, errBroken }
)

func TestObserver(t *testing.T) {
	type step struct {
		kernel  func(i int) ([]pipvs.RealServer, error)
		metric  bool
		wantErr error
		want    obsStats
	}
	for _, tc := range []struct {
		name     string
		services int
		steps    []step
	}{
		{"no hint: one sample read, stops at the first incomplete", 10, []step{
			{kernel: none, want: obsStats{Pending: 10, Polls: 1, Reads: 1}},
			{kernel: none, want: obsStats{Pending: 10, Polls: 2, Reads: 2}},
		}},
		{"a complete sample arms a pass over the rest", 10, []step{
			{kernel: all, want: obsStats{Pending: 0, Polls: 1, Passes: 1, Reads: 10, HintBy: hintSample}},
		}},
		{"a pass that leaves many pending goes back to sampling; only pending Services are read again", 10, []step{
			{kernel: below(5), want: obsStats{Pending: 5, Polls: 1, Passes: 1, Reads: 10, HintBy: hintSample}},
			{kernel: none, want: obsStats{Pending: 5, Polls: 2, Passes: 1, Reads: 11, HintBy: hintSample}},
			{kernel: all, want: obsStats{Pending: 0, Polls: 3, Passes: 2, Reads: 16, HintBy: hintSample}},
		}},
		{"the proxy's metric arms passes while the sample is incomplete", 10, []step{
			{kernel: from(5), metric: true, want: obsStats{Pending: 5, Polls: 1, Passes: 1, Reads: 10, HintBy: hintMetric, MetricSeen: true}},
			{kernel: all, want: obsStats{Pending: 0, Polls: 2, Passes: 2, Reads: 15, HintBy: hintMetric, MetricSeen: true}},
		}},
		{"few pending: a pass without a hint", 3, []step{
			{kernel: none, want: obsStats{Pending: 3, Polls: 1, Passes: 1, Reads: 3, HintBy: hintFew}},
			{kernel: all, want: obsStats{Pending: 0, Polls: 2, Passes: 2, Reads: 6, HintBy: hintFew}},
		}},
		{"a real server too many stays pending", 3, []step{
			{kernel: extra, want: obsStats{Pending: 3, Polls: 1, Passes: 1, Reads: 3, HintBy: hintFew}},
			{kernel: all, want: obsStats{Pending: 0, Polls: 2, Passes: 2, Reads: 6, HintBy: hintFew}},
		}},
		{"a read error ends the poll and keeps the rest pending", 3, []step{
			{kernel: broken, wantErr: errBroken, want: obsStats{Pending: 3, Polls: 1, Passes: 1, Reads: 1, HintBy: hintFew}},
			{kernel: all, want: obsStats{Pending: 0, Polls: 2, Passes: 2, Reads: 4, HintBy: hintFew}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{t: t, index: map[pipvs.VSKey]int{}, complete: map[pipvs.VSKey]bool{}}
			var targets []target
			for i := 0; i < tc.services; i++ {
				k.index[vsKey(i)] = i
				r := real(i)
				targets = append(targets, target{vs: vsKey(i), want: map[netip.AddrPort]bool{r.AddrPort(): true}})
			}
			metric := false
			// A stopped clock: every duration is 0, the stats compare whole.
			start := time.Unix(1000, 0)
			o := newObserver(k, targets, func() bool { return metric }, nil, start)
			o.few, o.sample, o.now = 4, 3, func() time.Time { return start }
			for i, s := range tc.steps {
				k.state, metric = s.kernel, s.metric
				if err := o.poll(); !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: poll: %v, want %v", i, err, s.wantErr)
				}
				if d := cmp.Diff(s.want, o.stats); d != "" {
					t.Errorf("step %d: (-want +got):\n%s", i, d)
				}
			}
		})
	}
}

func TestMetricSet(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		set        bool
	}{
		{"ours, no label", "# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\nkubeproxy_sync_proxy_rules_last_timestamp_seconds 1.7957775279028254e+09\n", true},
		{"kube-proxy, ip_family", "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1.79e+09\n", true},
		{"zero", "kubeproxy_sync_proxy_rules_last_timestamp_seconds 0\n", false},
		{"absent", "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds 1.79e+09\n", false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, tc.page) }))
		if got := metricSet(srv.Client(), srv.URL); got != tc.set {
			t.Errorf("%s: metricSet = %v, want %v", tc.name, got, tc.set)
		}
		srv.Close()
	}
}
