package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

type fakeSummary struct {
	s   *statsapi.Summary
	err error
}

func (f fakeSummary) Summary(context.Context) (*statsapi.Summary, error) { return f.s, f.err }

func TestResourceMetrics(t *testing.T) {
	ts := metav1.NewTime(time.Unix(1700000000, 0))
	start := metav1.NewTime(time.Unix(1600000000, 500000000))
	sum := &statsapi.Summary{
		Node: statsapi.NodeStats{NodeName: "n",
			CPU:    &statsapi.CPUStats{Time: ts, UsageCoreNanoSeconds: ptr.To[uint64](2500000000)},
			Memory: &statsapi.MemoryStats{Time: ts, WorkingSetBytes: ptr.To[uint64](1024)}},
		Pods: []statsapi.PodStats{{
			PodRef: statsapi.PodReference{Name: "p", Namespace: "ns"},
			CPU:    &statsapi.CPUStats{Time: ts, UsageCoreNanoSeconds: ptr.To[uint64](1000000000)},
			Containers: []statsapi.ContainerStats{{Name: "c", StartTime: start,
				CPU:    &statsapi.CPUStats{Time: ts, UsageCoreNanoSeconds: ptr.To[uint64](500000000)},
				Memory: &statsapi.MemoryStats{Time: ts, WorkingSetBytes: ptr.To[uint64](2048)}},
				// No figures yet: only its start time.
				{Name: "new", StartTime: start}},
		}},
	}
	for _, tc := range []struct {
		name string
		src  fakeSummary
		want string
	}{
		{"summary", fakeSummary{s: sum}, `
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="c",namespace="ns",pod="p"} 0.5 1700000000000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="c",namespace="ns",pod="p"} 2048 1700000000000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="c",namespace="ns",pod="p"} 1.6000000005e+09
container_start_time_seconds{container="new",namespace="ns",pod="p"} 1.6000000005e+09
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 2.5 1700000000000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1024 1700000000000
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{namespace="ns",pod="p"} 1 1700000000000
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 0
`},
		{"error", fakeSummary{err: errors.New("runtime down")}, `
# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE resource_scrape_error gauge
resource_scrape_error 1
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := resourceCollector{stats: tc.src, log: zap.NewNop()}
			if err := testutil.CollectAndCompare(c, strings.NewReader(tc.want), "node_cpu_usage_seconds_total",
				"node_memory_working_set_bytes", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
				"container_start_time_seconds", "pod_cpu_usage_seconds_total", "pod_memory_working_set_bytes",
				"resource_scrape_error"); err != nil {
				t.Error(err)
			}
		})
	}
}
