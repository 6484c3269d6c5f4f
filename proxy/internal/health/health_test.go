package health

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHealthz(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now := t0
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	s := New(time.Minute, func() time.Time { return now }, func() *v1.Node { return node })
	get := func(path string) (int, ProxyHealth) {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var h ProxyHealth
		if err := json.Unmarshal(rec.Body.Bytes(), &h); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
		return rec.Code, h
	}
	yes, no := true, false
	s.Updated(v1.IPv4Protocol)
	steps := []struct {
		name     string
		do       func()
		path     string
		wantCode int
		want     ProxyHealth
	}{{
		name: "synced", do: func() { now = t0.Add(10 * time.Second) }, path: "/healthz", wantCode: 200,
		want: ProxyHealth{LastUpdated: t0.Add(10 * time.Second), CurrentTime: t0.Add(10 * time.Second), NodeEligible: &yes, Healthy: true,
			Status: map[v1.IPFamily]ProxierHealth{v1.IPv4Protocol: {LastUpdated: t0, Healthy: true}}},
	}, {
		name: "queued, within timeout", do: func() { s.QueuedUpdate(v1.IPv4Protocol); now = t0.Add(50 * time.Second) }, path: "/healthz", wantCode: 200,
		want: ProxyHealth{LastUpdated: t0.Add(50 * time.Second), CurrentTime: t0.Add(50 * time.Second), NodeEligible: &yes, Healthy: true,
			Status: map[v1.IPFamily]ProxierHealth{v1.IPv4Protocol: {LastUpdated: t0, Healthy: true}}},
	}, {
		name: "queued change not synced within the timeout: stale", do: func() { now = t0.Add(71 * time.Second) }, path: "/healthz", wantCode: 503,
		want: ProxyHealth{LastUpdated: t0, CurrentTime: t0.Add(71 * time.Second), NodeEligible: &yes, Healthy: false,
			Status: map[v1.IPFamily]ProxierHealth{v1.IPv4Protocol: {LastUpdated: t0, Healthy: false}}},
	}, {
		name: "synced again; node being deleted: healthz 503, livez 200", do: func() {
			s.Updated(v1.IPv4Protocol)
			node.Spec.Taints = []v1.Taint{{Key: toBeDeletedTaint}}
		}, path: "/healthz", wantCode: 503,
		want: ProxyHealth{LastUpdated: t0.Add(71 * time.Second), CurrentTime: t0.Add(71 * time.Second), NodeEligible: &no, Healthy: true,
			Status: map[v1.IPFamily]ProxierHealth{v1.IPv4Protocol: {LastUpdated: t0.Add(71 * time.Second), Healthy: true}}},
	}, {
		name: "livez ignores the node", do: func() {}, path: "/livez", wantCode: 200,
		want: ProxyHealth{LastUpdated: t0.Add(71 * time.Second), CurrentTime: t0.Add(71 * time.Second), Healthy: true,
			Status: map[v1.IPFamily]ProxierHealth{v1.IPv4Protocol: {LastUpdated: t0.Add(71 * time.Second), Healthy: true}}},
	}}
	for _, st := range steps {
		st.do()
		code, got := get(st.path)
		if code != st.wantCode {
			t.Errorf("%s: code %d, want %d", st.name, code, st.wantCode)
		}
		if d := cmp.Diff(st.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, d)
		}
	}
}
