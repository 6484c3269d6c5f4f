package userns

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func statusResp(ready bool, handlers ...*runtimeapi.RuntimeHandler) *runtimeapi.StatusResponse {
	return &runtimeapi.StatusResponse{RuntimeHandlers: handlers, Status: &runtimeapi.RuntimeStatus{
		Conditions: []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: ready}}}}
}

func handler(name string, userns bool) *runtimeapi.RuntimeHandler {
	return &runtimeapi.RuntimeHandler{Name: name, Features: &runtimeapi.RuntimeHandlerFeatures{UserNamespaces: userns}}
}

func TestHandlersSupport(t *testing.T) {
	type result struct {
		OK  bool
		Err string
	}
	for _, tc := range []struct {
		name    string
		updates []*runtimeapi.StatusResponse
		handler string
		want    result
	}{
		{name: "nothing reported: unsupported", want: result{}},
		{name: "no handler list (older runtime): unsupported", updates: []*runtimeapi.StatusResponse{statusResp(true)}, want: result{}},
		{name: "default handler with support", updates: []*runtimeapi.StatusResponse{statusResp(true, handler("", true), handler("kata", false))},
			want: result{OK: true}},
		{name: "named handler without support", updates: []*runtimeapi.StatusResponse{statusResp(true, handler("", true), handler("kata", false))},
			handler: "kata", want: result{}},
		{name: "handler without features", updates: []*runtimeapi.StatusResponse{statusResp(true, &runtimeapi.RuntimeHandler{Name: ""})},
			want: result{}},
		{name: "unknown handler", updates: []*runtimeapi.StatusResponse{statusResp(true, handler("", true))}, handler: "gvisor",
			want: result{Err: `the handler "gvisor" is not known`}},
		{name: "not ready keeps what was reported", handler: "",
			updates: []*runtimeapi.StatusResponse{statusResp(true, handler("", true)), statusResp(false)}, want: result{OK: true}},
		{name: "newer report wins", handler: "",
			updates: []*runtimeapi.StatusResponse{statusResp(true, handler("", true)), statusResp(true, handler("", false))}, want: result{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handlers{}
			for _, u := range tc.updates {
				h.Update(u)
			}
			ok, err := h.SupportsUserNamespaces(context.Background(), tc.handler)
			got := result{OK: ok}
			if err != nil {
				got.Err = err.Error()
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestHandlersReadStatusOnMiss: without a report of the handler, the cache
// reads the Status itself, at most once per refreshAfter.
func TestHandlersReadStatusOnMiss(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	reads := 0
	resp, respErr := statusResp(true), error(errors.New("unavailable"))
	h := &Handlers{Clock: clk, Status: func(context.Context, bool) (*runtimeapi.StatusResponse, error) {
		reads++
		return resp, respErr
	}}
	ask := func(want bool) {
		t.Helper()
		if ok, _ := h.SupportsUserNamespaces(context.Background(), ""); ok != want {
			t.Errorf("supported %v, want %v", ok, want)
		}
	}
	ask(false) // never read: reads, fails
	ask(false) // a failed read waits its turn too
	clk.SetTime(clk.Now().Add(refreshAfter))
	respErr = nil
	ask(false) // reads: no handlers listed
	resp = statusResp(true, handler("", true))
	clk.SetTime(clk.Now().Add(refreshAfter - time.Millisecond))
	ask(false) // too soon
	clk.SetTime(clk.Now().Add(time.Millisecond))
	ask(true) // reads again
	clk.SetTime(clk.Now().Add(time.Hour))
	ask(true) // known: no read
	if reads != 3 {
		t.Errorf("%d Status reads, want 3", reads)
	}
	// A report from the node status counts as a read.
	h2 := &Handlers{Clock: clk, Status: h.Status}
	h2.Update(statusResp(true))
	reads = 0
	if ok, _ := h2.SupportsUserNamespaces(context.Background(), ""); ok || reads != 0 {
		t.Errorf("just reported: supported %v after %d reads, want false after 0", ok, reads)
	}
}
