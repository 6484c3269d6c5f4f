package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// countingLimiter is a rate limiter that lets every request through at
// once and counts the waits client-go asks of it.
type countingLimiter struct{ waits int }

func (l *countingLimiter) TryAccept() bool                { return true }
func (l *countingLimiter) Accept()                        { l.waits++ }
func (l *countingLimiter) Stop()                          {}
func (l *countingLimiter) QPS() float32                   { return 1 }
func (l *countingLimiter) Wait(ctx context.Context) error { l.waits++; return nil }

// TestMetricsObserveEveryRequest checks that every request is observed
// once in the rate limiter histogram and once in the result counter, under
// the server's host, as the upstream kubelet's /metrics shows them.
func TestMetricsObserveEveryRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "cm", "namespace": "ns"}})
	}))
	defer srv.Close()
	host := mustHost(t, srv.URL)
	RegisterMetrics()
	before := histCount(t, host)
	lim := &countingLimiter{}
	c, err := New(&rest.Config{Host: srv.URL, RateLimiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.ConfigMaps("ns").Get(context.Background(), "cm", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]uint64{"limiter waits": uint64(lim.waits), "histogram": histCount(t, host) - before}
	var m dto.Metric
	if err := RequestsTotal.WithLabelValues("200", "GET", host).Write(&m); err != nil {
		t.Fatal(err)
	}
	got["requests 200 GET"] = uint64(m.GetCounter().GetValue())
	want := map[string]uint64{"limiter waits": 3, "histogram": 3, "requests 200 GET": 3}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("observations (-want +got):\n%s", d)
	}
}

func mustHost(t *testing.T, s string) string {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func histCount(t *testing.T, host string) uint64 {
	t.Helper()
	var m dto.Metric
	h, err := RateLimiterDuration.GetMetricWithLabelValues("GET", host)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
