package objectcache

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func configMap(name, v string) *v1.ConfigMap {
	return &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Data: map[string]string{"k": v}}
}

// fetches counts the reads that went to the API server instead of a watch.
type fetches struct {
	mu sync.Mutex
	n  int
}

func (f *fetches) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// clientsetCache is a ConfigMap cache over a fake clientset, with the
// same field selector the kubelet uses (the fake does not apply it).
func clientsetCache(t *testing.T, cs *fake.Clientset, f *fetches) *Cache[*v1.ConfigMap] {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := &Cache[*v1.ConfigMap]{
		ListWatch: func(ns, name string) cache.ListerWatcher {
			sel := func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}
			return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					sel(&o)
					return cs.CoreV1().ConfigMaps(ns).List(ctx, o)
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					sel(&o)
					return cs.CoreV1().ConfigMaps(ns).Watch(ctx, o)
				},
			}, cs)
		},
		Fetch: func(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
			f.mu.Lock()
			f.n++
			f.mu.Unlock()
			return cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		},
		New:      func() *v1.ConfigMap { return &v1.ConfigMap{} },
		Resource: v1.Resource("configmaps"),
	}
	c.Start(ctx)
	return c
}

// requests are the clientset's calls on ConfigMaps, as verb/name or
// verb?fieldSelector.
func requests(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		switch a := a.(type) {
		case clienttesting.ListAction:
			out = append(out, "list?"+a.GetListRestrictions().Fields.String())
		case clienttesting.WatchAction:
			out = append(out, "watch?"+a.GetWatchRestrictions().Fields.String())
		case clienttesting.GetAction:
			out = append(out, "get/"+a.GetName())
		default:
			out = append(out, a.GetVerb())
		}
	}
	return out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestReferencedObjectIsWatched follows one ConfigMap through two Pods'
// references: one list and one watch serve every read and see its update;
// once no Pod references it, reads go to the API server again.
func TestReferencedObjectIsWatched(t *testing.T) {
	cs := fake.NewClientset(configMap("ca", "v1"))
	f := &fetches{}
	c := clientsetCache(t, cs, f)
	ctx := context.Background()
	c.AddReference("ns", "ca", "pod-a")
	c.AddReference("ns", "ca", "pod-b")
	for range 5 {
		cm, err := c.Get(ctx, "ns", "ca")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(map[string]string{"k": "v1"}, cm.Data); d != "" {
			t.Fatalf("data (-want +got):\n%s", d)
		}
	}
	// Get serves once the list is in; the fake's watch sees only what
	// changes after it starts.
	eventually(t, "watch started", func() bool { return len(cs.Actions()) == 2 })
	if _, err := cs.CoreV1().ConfigMaps("ns").Update(ctx, configMap("ca", "v2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "update seen through the watch", func() bool {
		cm, err := c.Get(ctx, "ns", "ca")
		return err == nil && cm.Data["k"] == "v2"
	})
	c.DeleteReference("ns", "ca", "pod-a")
	if c.Watched() != 1 {
		t.Fatalf("watched after one of two references went: %d, want 1", c.Watched())
	}
	c.DeleteReference("ns", "ca", "pod-b")
	if c.Watched() != 0 {
		t.Fatalf("watched after the last reference went: %d, want 0", c.Watched())
	}
	if _, err := c.Get(ctx, "ns", "ca"); err != nil {
		t.Fatal(err)
	}
	want := []string{"list?metadata.name=ca", "watch?metadata.name=ca", "update", "get/ca"}
	if d := cmp.Diff(want, requests(cs)); d != "" {
		t.Errorf("API requests (-want +got):\n%s", d)
	}
	if f.count() != 1 {
		t.Errorf("reads from the API server: %d, want 1 (after the last reference)", f.count())
	}
}

// TestMissingObjectIsNotFound: a referenced object that does not exist is
// the API server's NotFound, which optional volumes and env rely on.
func TestMissingObjectIsNotFound(t *testing.T) {
	cs := fake.NewClientset()
	c := clientsetCache(t, cs, &fetches{})
	c.AddReference("ns", "absent", "pod-a")
	_, err := c.Get(context.Background(), "ns", "absent")
	if !apierrors.IsNotFound(err) {
		t.Fatalf("Get of a missing object: %v, want NotFound", err)
	}
}

// TestFailingWatchFallsBackToGet: while the watch cannot list (the node
// authorizer has not seen the Pod yet), Get reads the API server at once
// instead of waiting for the reflector's back-off.
func TestFailingWatchFallsBackToGet(t *testing.T) {
	cs := fake.NewClientset(configMap("ca", "v1"))
	forbidden := apierrors.NewForbidden(v1.Resource("configmaps"), "ca", errors.New("no relationship found"))
	cs.PrependReactor("list", "configmaps", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, forbidden })
	f := &fetches{}
	c := clientsetCache(t, cs, f)
	c.SyncWait = time.Hour // Get must not wait for this
	c.AddReference("ns", "ca", "pod-a")
	cm, err := c.Get(context.Background(), "ns", "ca")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["k"] != "v1" || f.count() != 1 {
		t.Errorf("got data %v after %d API reads, want v1 after 1", cm.Data, f.count())
	}
}

// TestImmutableObjectStopsItsWatch: an immutable object cannot change, so
// its watch stops (as upstream's) and its copy keeps serving.
func TestImmutableObjectStopsItsWatch(t *testing.T) {
	cm := configMap("ca", "v1")
	cm.Immutable = ptr.To(true)
	cm.ResourceVersion = "5"
	fw := watch.NewFake()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Cache[*v1.ConfigMap]{
		ListWatch: func(ns, name string) cache.ListerWatcher {
			return unsupportedWatchList{&cache.ListWatch{
				ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
					return &v1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "5"}, Items: []v1.ConfigMap{*cm}}, nil
				},
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return fw, nil },
			}}
		},
		Fetch: func(context.Context, string, string) (*v1.ConfigMap, error) {
			return nil, errors.New("the API server was read")
		},
		New:       func() *v1.ConfigMap { return &v1.ConfigMap{} },
		Resource:  v1.Resource("configmaps"),
		Immutable: func(o *v1.ConfigMap) bool { return o.Immutable != nil && *o.Immutable },
	}
	c.Start(ctx)
	c.AddReference("ns", "ca", types.UID("pod-a"))
	for range 2 {
		got, err := c.Get(ctx, "ns", "ca")
		if err != nil {
			t.Fatal(err)
		}
		if got.Data["k"] != "v1" {
			t.Fatalf("data %v, want v1", got.Data)
		}
	}
	eventually(t, "watch stopped", fw.IsStopped)
}

// unsupportedWatchList makes the reflector list and then watch, as it does
// against a client without WatchList semantics.
type unsupportedWatchList struct{ *cache.ListWatch }

func (unsupportedWatchList) IsWatchListSemanticsUnSupported() bool { return true }
