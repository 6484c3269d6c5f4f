package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// Upstream's /metrics/resource (pkg/kubelet/metrics/collectors): the same
// names, labels, help texts (with component-base's stability prefix) and
// sample timestamps, from the stats summary.
var (
	nodeCPUDesc = prometheus.NewDesc("node_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemoryDesc = prometheus.NewDesc("node_memory_working_set_bytes",
		"[STABLE] Current working set of the node in bytes", nil, nil)
	containerCPUDesc = prometheus.NewDesc("container_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the container in core-seconds", []string{"container", "pod", "namespace"}, nil)
	containerMemoryDesc = prometheus.NewDesc("container_memory_working_set_bytes",
		"[STABLE] Current working set of the container in bytes", []string{"container", "pod", "namespace"}, nil)
	containerStartDesc = prometheus.NewDesc("container_start_time_seconds",
		"[STABLE] Start time of the container since unix epoch in seconds", []string{"container", "pod", "namespace"}, nil)
	podCPUDesc = prometheus.NewDesc("pod_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the pod in core-seconds", []string{"pod", "namespace"}, nil)
	podMemoryDesc = prometheus.NewDesc("pod_memory_working_set_bytes",
		"[STABLE] Current working set of the pod in bytes", []string{"pod", "namespace"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("scrape_error",
		"[ALPHA] (Deprecated since 1.29.0) 1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
	resourceScrapeErrorDesc = prometheus.NewDesc("resource_scrape_error",
		"[STABLE] 1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

type summarizer interface {
	Summary(ctx context.Context) (*statsapi.Summary, error)
}

// resourceCollector turns a stats summary into the resource metrics.
type resourceCollector struct {
	stats summarizer
	log   *zap.Logger
}

func (c resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeCPUDesc, nodeMemoryDesc, containerCPUDesc, containerMemoryDesc,
		containerStartDesc, podCPUDesc, podMemoryDesc, scrapeErrorDesc, resourceScrapeErrorDesc} {
		ch <- d
	}
}

func (c resourceCollector) Collect(ch chan<- prometheus.Metric) {
	errs := 0.0
	defer func() {
		ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, errs)
		ch <- prometheus.MustNewConstMetric(resourceScrapeErrorDesc, prometheus.GaugeValue, errs)
	}()
	s, err := c.stats.Summary(context.Background())
	if err != nil {
		errs = 1
		c.log.Info("resource metrics", zap.Error(err))
		return
	}
	at := func(t time.Time, d *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.NewMetricWithTimestamp(t, prometheus.MustNewConstMetric(d, typ, v, labels...))
	}
	if cpu := s.Node.CPU; cpu != nil && cpu.UsageCoreNanoSeconds != nil {
		at(cpu.Time.Time, nodeCPUDesc, prometheus.CounterValue, seconds(*cpu.UsageCoreNanoSeconds))
	}
	if m := s.Node.Memory; m != nil && m.WorkingSetBytes != nil {
		at(m.Time.Time, nodeMemoryDesc, prometheus.GaugeValue, float64(*m.WorkingSetBytes))
	}
	for _, p := range s.Pods {
		name, ns := p.PodRef.Name, p.PodRef.Namespace
		for _, ct := range p.Containers {
			if ct.StartTime.Unix() > 0 {
				ch <- prometheus.MustNewConstMetric(containerStartDesc, prometheus.GaugeValue,
					float64(ct.StartTime.UnixNano())/float64(time.Second), ct.Name, name, ns)
			}
			if cpu := ct.CPU; cpu != nil && cpu.UsageCoreNanoSeconds != nil {
				at(cpu.Time.Time, containerCPUDesc, prometheus.CounterValue, seconds(*cpu.UsageCoreNanoSeconds), ct.Name, name, ns)
			}
			if m := ct.Memory; m != nil && m.WorkingSetBytes != nil {
				at(m.Time.Time, containerMemoryDesc, prometheus.GaugeValue, float64(*m.WorkingSetBytes), ct.Name, name, ns)
			}
		}
		if cpu := p.CPU; cpu != nil && cpu.UsageCoreNanoSeconds != nil {
			at(cpu.Time.Time, podCPUDesc, prometheus.CounterValue, seconds(*cpu.UsageCoreNanoSeconds), name, ns)
		}
		if m := p.Memory; m != nil && m.WorkingSetBytes != nil {
			at(m.Time.Time, podMemoryDesc, prometheus.GaugeValue, float64(*m.WorkingSetBytes), name, ns)
		}
	}
}

func seconds(ns uint64) float64 { return float64(ns) / float64(time.Second) }

// resourceMetrics serves /metrics/resource.
func resourceMetrics(stats summarizer, log *zap.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(resourceCollector{stats: stats, log: log})
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
