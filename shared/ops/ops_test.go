package ops

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestNamedChecks(t *testing.T) {
	s := New(zap.NewNop(), Options{})
	var apiErr error
	s.AddReadyz(Check{Name: "informers-synced", Func: func(*http.Request) error { return apiErr }})
	s.AddLivez(Check{Name: "sync-loop", Func: func(*http.Request) error { return nil }})
	h := s.Handler()

	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if code, body := get(t, h, p); code != 200 || body != "ok" {
			t.Fatalf("%s: %d %q", p, code, body)
		}
	}
	apiErr = errors.New("not synced")
	code, body := get(t, h, "/readyz")
	if code != 500 || !strings.Contains(body, "[-]informers-synced failed: not synced") {
		t.Fatalf("/readyz with failing check: %d %q", code, body)
	}
	if code, _ := get(t, h, "/livez"); code != 200 {
		t.Fatalf("a readiness failure must not fail /livez: %d", code)
	}
	if code, _ := get(t, h, "/readyz?exclude=informers-synced"); code != 200 {
		t.Fatalf("exclude: %d", code)
	}
	if code, _ := get(t, h, "/readyz/informers-synced"); code != 500 {
		t.Fatalf("single check: %d", code)
	}
	if code, _ := get(t, h, "/readyz/nope"); code != 404 {
		t.Fatalf("unknown check: %d", code)
	}
	if _, body := get(t, h, "/livez?verbose"); !strings.Contains(body, "[+]sync-loop ok") {
		t.Fatalf("verbose: %q", body)
	}
}

func TestMetricsAndPprof(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "nodesuite_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	h := New(zap.NewNop(), Options{Registry: reg}).Handler()
	if code, body := get(t, h, "/metrics"); code != 200 || !strings.Contains(body, "nodesuite_test_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, h, "/debug/pprof/"); code != 404 {
		t.Fatalf("pprof must be off by default, got %d", code)
	}
	if code, _ := get(t, New(zap.NewNop(), Options{EnablePprof: true}).Handler(), "/debug/pprof/"); code != 200 {
		t.Fatalf("pprof enabled: %d", code)
	}
}
