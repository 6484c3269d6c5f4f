package apiclient

import (
	"context"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/metrics"
)

// Client-go's request metrics under the names and labels component-base
// gives them in the upstream kubelet, so /metrics of both compare: above
// all the time requests wait in the client-side rate limiter
// (kubeAPIQPS/Burst), which decides a burst's tail when the kubelet sends
// more requests than the bucket holds.
var (
	RateLimiterDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rest_client_rate_limiter_duration_seconds",
		Help:    "Client side rate limiter latency in seconds. Broken down by verb, and host.",
		Buckets: []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0},
	}, []string{"verb", "host"})
	RequestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rest_client_requests_total",
		Help: "Number of HTTP requests, partitioned by status code, method, and host.",
	}, []string{"code", "method", "host"})
)

var registerOnce sync.Once

// RegisterMetrics points client-go's metric hooks at the collectors above
// and returns them for a registry. Client-go takes the hooks once per
// process; later calls only return the collectors.
func RegisterMetrics() []prometheus.Collector {
	registerOnce.Do(func() {
		metrics.Register(metrics.RegisterOpts{
			RateLimiterLatency: latencyHook{RateLimiterDuration},
			RequestResult:      resultHook{RequestsTotal},
		})
	})
	return []prometheus.Collector{RateLimiterDuration, RequestsTotal}
}

type latencyHook struct{ h *prometheus.HistogramVec }

func (l latencyHook) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	l.h.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}

type resultHook struct{ c *prometheus.CounterVec }

func (r resultHook) Increment(_ context.Context, code, method, host string) {
	r.c.WithLabelValues(code, method, host).Inc()
}
