package main

import (
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
