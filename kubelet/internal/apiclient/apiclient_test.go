package apiclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/reference"
	"k8s.io/utils/ptr"
)

type request struct {
	Method, Path, Query, ContentType string
}

// TestRequests checks each call's method, URL and body encoding against a
// server that answers every request with one JSON object.
func TestRequests(t *testing.T) {
	var mu sync.Mutex
	var got []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type")})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "answer", "namespace": "ns"}})
	}))
	defer srv.Close()
	c, err := New(&rest.Config{Host: srv.URL, QPS: -1, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const pb = "application/vnd.kubernetes.protobuf"
	calls := []struct {
		call func() error
		want request
	}{
		{func() error { _, err := c.Pods("ns").Get(ctx, "p", metav1.GetOptions{}); return err },
			request{"GET", "/api/v1/namespaces/ns/pods/p", "", ""}},
		{func() error {
			_, err := c.Pods("ns").Patch(ctx, "p", types.StrategicMergePatchType, []byte("{}"), metav1.PatchOptions{}, "status")
			return err
		}, request{"PATCH", "/api/v1/namespaces/ns/pods/p/status", "", "application/strategic-merge-patch+json"}},
		{func() error {
			return c.Pods("ns").Delete(ctx, "p", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		}, request{"DELETE", "/api/v1/namespaces/ns/pods/p", "", pb}},
		{func() error {
			_, err := c.Nodes().UpdateStatus(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.UpdateOptions{})
			return err
		},
			request{"PUT", "/api/v1/nodes/n/status", "", pb}},
		{func() error {
			_, err := c.Secrets("ns").Get(ctx, "s", metav1.GetOptions{ResourceVersion: "0"})
			return err
		},
			request{"GET", "/api/v1/namespaces/ns/secrets/s", "resourceVersion=0", ""}},
		{func() error {
			_, err := c.ServiceAccounts("ns").CreateToken(ctx, "sa", &authnv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}, request{"POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token", "", pb}},
		{func() error {
			_, err := EventSink{c}.Create(&v1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "ns2"}})
			return err
		}, request{"POST", "/api/v1/namespaces/ns2/events", "", pb}},
		{func() error {
			_, err := c.Leases("kube-node-lease").Update(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n"}}, metav1.UpdateOptions{})
			return err
		}, request{"PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n", "", pb}},
		{func() error {
			_, err := c.TokenReviews().Create(ctx, &authnv1.TokenReview{}, metav1.CreateOptions{})
			return err
		},
			request{"POST", "/apis/authentication.k8s.io/v1/tokenreviews", "", pb}},
		{func() error {
			_, err := c.SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{}, metav1.CreateOptions{})
			return err
		}, request{"POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "", pb}},
		{func() error { _, err := c.RuntimeClasses().Get(ctx, "rc", metav1.GetOptions{}); return err },
			request{"GET", "/apis/node.k8s.io/v1/runtimeclasses/rc", "", ""}},
		{func() error {
			lw := cache.NewListWatchFromClient(c.CoreREST(), "services", metav1.NamespaceAll, fields.Everything())
			_, err := lw.ListWithContext(ctx, metav1.ListOptions{ResourceVersion: "0"})
			return err
		}, request{"GET", "/api/v1/services", "resourceVersion=0", ""}},
	}
	var want []request
	for _, tc := range calls {
		want = append(want, tc.want)
		// The answer is a Pod whatever was asked: decoding may fail, the request is what is checked.
		_ = tc.call()
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

// TestSchemeKinds: the event recorder finds the kind of the objects the
// kubelet records Events about in Scheme.
func TestSchemeKinds(t *testing.T) {
	for _, o := range []runtime.Object{&v1.Pod{}, &v1.Node{}} {
		if _, err := reference.GetReference(Scheme, o); err != nil {
			t.Errorf("%T: %v", o, err)
		}
	}
}
