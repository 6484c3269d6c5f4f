package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

type fakeHost struct {
	pods []*v1.Pod
	cs   map[string]*runtimeapi.ContainerStatus // "name/previous"
}

func (h fakeHost) Pods() []*v1.Pod { return h.pods }

func (h fakeHost) Container(_ context.Context, _ types.UID, name string, previous bool) (*runtimeapi.ContainerStatus, error) {
	k := name + "/current"
	if previous {
		k = name + "/previous"
	}
	if c, ok := h.cs[k]; ok {
		return c, nil
	}
	return nil, ErrNotFound
}

func (h fakeHost) Sandbox(context.Context, types.UID) (string, error) { return "", ErrNotFound }

// tokenAuth authenticates "Bearer good" as user alice.
type tokenAuth struct{}

func (tokenAuth) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	if r.Header.Get("Authorization") == "Bearer good" {
		return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, true, nil
	}
	return nil, false, nil
}

// recordingAuthz allows alice everything but nodes/stats and records what it was asked.
type recordingAuthz struct{ asked []authorizer.AttributesRecord }

func (a *recordingAuthz) Authorize(_ context.Context, at authorizer.Attributes) (authorizer.Decision, string, error) {
	a.asked = append(a.asked, at.(authorizer.AttributesRecord))
	if at.GetSubresource() == "stats" {
		return authorizer.DecisionDeny, "no", nil
	}
	return authorizer.DecisionAllow, "", nil
}

func TestHandler(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, "0.log")
	prev := filepath.Join(dir, "prev.log")
	if err := os.WriteFile(cur, []byte("2026-11-27T00:00:00.000000000Z stdout F out-line\n2026-11-27T00:00:01.000000000Z stderr F err-line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prev, []byte("2026-11-27T00:00:00.000000000Z stdout F ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	host := fakeHost{pods: []*v1.Pod{pod}, cs: map[string]*runtimeapi.ContainerStatus{
		"c/current":  {Id: "c1", LogPath: cur, State: runtimeapi.ContainerState_CONTAINER_EXITED},
		"c/previous": {Id: "c0", LogPath: prev, State: runtimeapi.ContainerState_CONTAINER_EXITED},
	}}
	authz := &recordingAuthz{}
	s := &Server{NodeName: "vm", Host: host, Runtime: critest.NewFakeRuntimeService(), Authn: tokenAuth{}, Authz: authz, Log: zap.NewNop()}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	type got struct {
		Code int
		Body string
	}
	do := func(method, path, token string) got {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return got{resp.StatusCode, string(b)}
	}
	tests := []struct {
		name, method, path, token string
		want                      got
	}{
		{"no credentials", "GET", "/containerLogs/ns/p/c", "", got{401, "Unauthorized\n"}},
		{"denied", "GET", "/stats/summary", "good", got{403, "Forbidden (user=alice, verb=get, resource=nodes, subresource=stats)\n"}},
		{"logs", "GET", "/containerLogs/ns/p/c", "good", got{200, "out-line\nerr-line\n"}},
		{"stdout only", "GET", "/containerLogs/ns/p/c?stream=Stdout", "good", got{200, "out-line\n"}},
		{"tail", "GET", "/containerLogs/ns/p/c?tailLines=1", "good", got{200, "err-line\n"}},
		{"previous", "GET", "/containerLogs/ns/p/c?previous=true", "good", got{200, "ran\n"}},
		{"unknown container", "GET", "/containerLogs/ns/p/nope", "good", got{404, "container \"nope\" not found in pod \"p\"\n"}},
		{"unknown pod", "GET", "/containerLogs/ns/q/c", "good", got{404, "pod \"q\" does not exist\n"}},
		{"exec of a stopped container", "POST", "/exec/ns/p/c?command=true&output=1", "good", got{400, "container c is not running\n"}},
	}
	for _, tc := range tests {
		if d := cmp.Diff(tc.want, do(tc.method, tc.path, tc.token)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
	var subs []string
	for _, a := range authz.asked {
		subs = append(subs, a.Verb+" nodes/"+a.Subresource+" "+a.Name)
	}
	want := []string{"get nodes/stats vm", "get nodes/proxy vm", "get nodes/proxy vm", "get nodes/proxy vm", "get nodes/proxy vm",
		"get nodes/proxy vm", "get nodes/proxy vm", "create nodes/proxy vm"}
	if d := cmp.Diff(want, subs); d != "" {
		t.Errorf("authorization asked (-want +got):\n%s", d)
	}
}

func TestAttributes(t *testing.T) {
	u := &user.DefaultInfo{Name: "u"}
	for path, want := range map[string]string{"/containerLogs/a/b/c": "proxy", "/exec/a/b/c": "proxy", "/stats/summary": "stats",
		"/metrics/cadvisor": "metrics", "/logs/": "log", "/statsx": "proxy", "/pods": "proxy"} {
		r := httptest.NewRequest("GET", path, nil)
		if got := Attributes("n", u, r).Subresource; got != want {
			t.Errorf("%s: subresource %q, want %q", path, got, want)
		}
	}
}

// TestWebSocketStreamsRefused: WebSocket exec and tunnelled port-forward
// reach this kubelet only from clients that bypass the API server; they get
// a 400 that says why (the API server translates them to SPDY).
func TestWebSocketStreamsRefused(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}, Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	host := fakeHost{pods: []*v1.Pod{pod}, cs: map[string]*runtimeapi.ContainerStatus{
		"c/current": {Id: "c1", State: runtimeapi.ContainerState_CONTAINER_RUNNING}}}
	s := &Server{NodeName: "vm", Host: host, Runtime: critest.NewFakeRuntimeService(), Authn: tokenAuth{}, Authz: &recordingAuthz{}, Log: zap.NewNop()}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	type got struct {
		Code int
		Body string
	}
	refused := got{400, ErrWebSocketStreaming.Error() + "\n"}
	for _, tc := range []struct {
		name, method, path, upgrade, protocol string
		want                                  got
	}{
		{"exec v5", "GET", "/exec/ns/p/c?command=sh&input=1&output=1", "websocket", "v5.channel.k8s.io", refused},
		{"attach v5", "GET", "/attach/ns/p/c?output=1", "websocket", "v5.channel.k8s.io", refused},
		{"port-forward tunnel", "GET", "/portForward/ns/p", "websocket", "SPDY/3.1+portforward.k8s.io", refused},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer good")
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", tc.upgrade)
		req.Header.Set("Sec-WebSocket-Protocol", tc.protocol)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if d := cmp.Diff(tc.want, got{resp.StatusCode, string(b)}); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
