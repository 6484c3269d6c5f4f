package syncer

import "github.com/prometheus/client_golang/prometheus"

// metrics use kube-proxy's names (k8s.io/kubernetes/pkg/proxy/metrics), so
// dashboards built for kube-proxy keep working.
type metrics struct {
	syncDuration, fullDuration, partialDuration prometheus.Histogram
	networkProgramming                          prometheus.Histogram
	lastSync, lastQueued                        prometheus.Gauge
	endpointChanges, serviceChanges             prometheus.Counter
	endpointPending, servicePending             prometheus.Gauge
	services, endpoints                         prometheus.Gauge
	syncErrors                                  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	b := prometheus.ExponentialBuckets(0.0001, 2, 18)
	m := &metrics{
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds", Buckets: b}),
		fullDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: "sync_full_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds for full resyncs", Buckets: b}),
		partialDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: "sync_partial_proxy_rules_duration_seconds",
			Help: "SyncProxyRules latency in seconds for partial resyncs", Buckets: b}),
		networkProgramming: prometheus.NewHistogram(prometheus.HistogramOpts{Subsystem: "kubeproxy", Name: "network_programming_duration_seconds",
			Help:    "In Cluster Network Programming Latency in seconds",
			Buckets: append(prometheus.LinearBuckets(0.25, 0.25, 2), prometheus.ExponentialBuckets(1, 2, 12)...)}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_last_timestamp_seconds",
			Help: "The last time proxy rules were successfully synced"}),
		lastQueued: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_last_queued_timestamp_seconds",
			Help: "The last time a sync of proxy rules was queued"}),
		endpointChanges: prometheus.NewCounter(prometheus.CounterOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_endpoint_changes_total",
			Help: "Cumulative proxy rules Endpoint changes"}),
		serviceChanges: prometheus.NewCounter(prometheus.CounterOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_service_changes_total",
			Help: "Cumulative proxy rules Service changes"}),
		endpointPending: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_endpoint_changes_pending",
			Help: "Pending proxy rules Endpoint changes"}),
		servicePending: prometheus.NewGauge(prometheus.GaugeOpts{Subsystem: "kubeproxy", Name: "sync_proxy_rules_service_changes_pending",
			Help: "Pending proxy rules Service changes"}),
		// kube-proxy has no plain counts; these are ours.
		services: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nodesuite", Subsystem: "proxy", Name: "service_ports",
			Help: "Service ports (per IP family) in the programmed state"}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nodesuite", Subsystem: "proxy", Name: "endpoints",
			Help: "Endpoints (per Service port and family) in the programmed state"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nodesuite", Subsystem: "proxy", Name: "sync_errors_total",
			Help: "Syncs that failed and were retried"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncDuration, m.fullDuration, m.partialDuration, m.networkProgramming, m.lastSync, m.lastQueued,
			m.endpointChanges, m.serviceChanges, m.endpointPending, m.servicePending, m.services, m.endpoints, m.syncErrors)
	}
	return m
}
