package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCounterAndPerPod(t *testing.T) {
	before := []byte(`# HELP apiserver_request_total x
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 10
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 4
apiserver_request_total_other{verb="GET"} 99
`)
	after := []byte(`apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 110
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 6
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 4
`)
	read := func(data []byte) callCounts {
		out := callCounts{}
		parseCounter(data, "apiserver_request_total", func(l map[string]string, v float64) { out[apiKey(l)] += v })
		return out
	}
	got := perPod(read(before), read(after), 2)
	want := callCounts{"api PATCH pods/status": 51, "api PUT leases.coordination.k8s.io": 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("per Pod (-want +got):\n%s", d)
	}
}

func TestLimiterCountsPrinted(t *testing.T) {
	metrics := func(sum, count float64) []byte {
		return fmt.Appendf(nil, `rest_client_rate_limiter_duration_seconds_bucket{host="h",verb="GET",le="0.005"} 1
rest_client_rate_limiter_duration_seconds_sum{host="h",verb="GET"} %g
rest_client_rate_limiter_duration_seconds_count{host="h",verb="GET"} %g
rest_client_rate_limiter_duration_seconds_sum{host="h",verb="POST"} 1
rest_client_rate_limiter_duration_seconds_count{host="h",verb="POST"} 10
`, sum, count)
	}
	read := func(data []byte) callCounts {
		out := callCounts{}
		parseCounter(data, "rest_client_rate_limiter_duration_seconds_sum", func(_ map[string]string, v float64) { out[limiterWait] += v })
		parseCounter(data, "rest_client_rate_limiter_duration_seconds_count", func(_ map[string]string, v float64) { out[limiterRequests] += v })
		return out
	}
	pp := perPod(read(metrics(0.5, 10)), read(metrics(4.5, 30)), 2)
	var b strings.Builder
	pp.print(&b, "ours")
	want := "  ours: kubelet API requests through its client-side rate limiter 10.0 per Pod, waiting in it 2000 ms per Pod (200 ms per request)\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("printed (-want +got):\n%s", d)
	}
}
