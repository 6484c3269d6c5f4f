// Package objectcache keeps the ConfigMaps and Secrets the node's Pods
// reference, one watch per object, as upstream's watch-based manager
// (configMapAndSecretChangeDetectionStrategy: Watch, its default) does: a
// watch starts when the first Pod references an object and stops when no
// Pod does, so volume set-up and env read a local copy instead of GETting
// the object on every sync.
package objectcache

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
)

// DefaultSyncWait is how long Get waits for a new watch's first listing
// before it reads the object from the API server instead (upstream waits
// up to 1 s, then fails the read).
const DefaultSyncWait = time.Second

// Cache holds the referenced objects of one resource.
type Cache[T runtime.Object] struct {
	// ListWatch lists and watches the single object namespace/name (a
	// field selector on metadata.name, which the node authorizer allows
	// for objects referenced by the node's Pods).
	ListWatch func(namespace, name string) cache.ListerWatcher
	// Fetch reads one object from the API server: for an object no Pod
	// references (nothing watches it), and while its watch has not listed
	// yet or fails (e.g. the node authorizer has not seen the Pod yet).
	Fetch func(ctx context.Context, namespace, name string) (T, error)
	// New makes an empty object of the resource, for the reflector.
	New func() T
	// Resource names the resource in NotFound errors.
	Resource schema.GroupResource
	// Immutable tells whether an object can no longer change; its watch
	// then stops and its last copy is kept. Nil: none is.
	Immutable func(T) bool
	// SyncWait bounds Get's wait for a new watch; zero is DefaultSyncWait.
	SyncWait time.Duration

	mu    sync.Mutex
	ctx   context.Context
	items map[key]*item
}

type key struct{ namespace, name string }

// item is one watched object: its store, reflector and referencing Pods.
type item struct {
	refs   map[types.UID]int
	store  *store
	cancel context.CancelFunc

	mu      sync.Mutex
	synced  bool // the reflector listed at least once
	failing bool // the last list or watch failed and nothing listed since
	stopped bool // immutable: the reflector stopped, the store is final
	changed chan struct{}
}

// notify wakes Gets waiting for the item's state to change; i.mu held.
func (i *item) notifyLocked() {
	close(i.changed)
	i.changed = make(chan struct{})
}

func (i *item) setFailing() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.synced && !i.failing {
		i.failing = true
		i.notifyLocked()
	}
}

// store marks the item synced when the reflector replaces its content (its
// first list, and every relist after a watch ended).
type store struct {
	cache.Store
	it *item
}

func (s *store) Replace(list []any, rv string) error {
	if err := s.Store.Replace(list, rv); err != nil {
		return err
	}
	s.it.mu.Lock()
	defer s.it.mu.Unlock()
	if !s.it.synced || s.it.failing {
		s.it.synced, s.it.failing = true, false
		s.it.notifyLocked()
	}
	return nil
}

// Start sets the context the watches run under; they all stop when it
// ends. Without Start they run until their last reference goes.
func (c *Cache[T]) Start(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
}

// AddReference records that Pod uid references namespace/name and starts
// the object's watch if it is the first reference.
func (c *Cache[T]) AddReference(namespace, name string, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := key{namespace, name}
	it := c.items[k]
	if it == nil {
		it = c.startLocked(k)
		if c.items == nil {
			c.items = map[key]*item{}
		}
		c.items[k] = it
	}
	it.refs[uid]++
}

// DeleteReference drops one reference of Pod uid; the last reference of
// the object stops its watch and forgets it.
func (c *Cache[T]) DeleteReference(namespace, name string, uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := key{namespace, name}
	it := c.items[k]
	if it == nil {
		return
	}
	if it.refs[uid]--; it.refs[uid] <= 0 {
		delete(it.refs, uid)
	}
	if len(it.refs) == 0 {
		it.cancel()
		delete(c.items, k)
	}
}

// Watched tells how many objects are watched (or kept, if immutable).
func (c *Cache[T]) Watched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

func (c *Cache[T]) startLocked(k key) *item {
	parent := c.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	it := &item{refs: map[types.UID]int{}, cancel: cancel, changed: make(chan struct{})}
	it.store = &store{Store: cache.NewStore(cache.MetaNamespaceKeyFunc), it: it}
	lw := observed{lw: c.ListWatch(k.namespace, k.name), fail: it.setFailing}
	r := cache.NewReflectorWithOptions(lw, c.New(), it.store, cache.ReflectorOptions{
		Name: fmt.Sprintf("%s %s/%s", c.Resource, k.namespace, k.name),
		// Upstream's choice: long watches, few re-watches per object.
		MinWatchTimeout: 30 * time.Minute,
	})
	go r.RunWithContext(ctx)
	return it
}

// Get returns the object from its watch, or from the API server when no
// Pod references it or its watch cannot serve yet. A missing object is a
// NotFound error, as the API server's.
func (c *Cache[T]) Get(ctx context.Context, namespace, name string) (T, error) {
	var zero T
	k := key{namespace, name}
	c.mu.Lock()
	it := c.items[k]
	c.mu.Unlock()
	if it == nil {
		return c.Fetch(ctx, namespace, name)
	}
	wait := c.SyncWait
	if wait == 0 {
		wait = DefaultSyncWait
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		it.mu.Lock()
		synced, failing, changed := it.synced, it.failing, it.changed
		it.mu.Unlock()
		if synced {
			break
		}
		if failing {
			return c.Fetch(ctx, namespace, name)
		}
		select {
		case <-changed:
		case <-timer.C:
			return c.Fetch(ctx, namespace, name)
		case <-ctx.Done():
			return zero, ctx.Err()
		}
	}
	o, ok, err := it.store.GetByKey(cache.ObjectName{Namespace: namespace, Name: name}.String())
	if err != nil {
		return zero, err
	}
	if !ok {
		return zero, apierrors.NewNotFound(c.Resource, name)
	}
	obj, ok := o.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s/%s: unexpected object type %T", c.Resource, namespace, name, o)
	}
	if c.Immutable != nil && c.Immutable(obj) {
		it.mu.Lock()
		if !it.stopped {
			it.stopped = true
			it.cancel() // it can no longer change: keep this copy, stop watching
		}
		it.mu.Unlock()
	}
	return obj, nil
}

// observed passes a ListerWatcher through and marks the item failing when
// a list or watch fails, so Gets stop waiting for it.
type observed struct {
	lw   cache.ListerWatcher
	fail func()
}

func (o observed) List(opts metav1.ListOptions) (runtime.Object, error) {
	return o.ListWithContext(context.Background(), opts)
}

func (o observed) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return o.WatchWithContext(context.Background(), opts)
}

func (o observed) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := cache.ToListerWatcherWithContext(o.lw).ListWithContext(ctx, opts)
	if err != nil && ctx.Err() == nil {
		o.fail()
	}
	return obj, err
}

func (o observed) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := cache.ToListerWatcherWithContext(o.lw).WatchWithContext(ctx, opts)
	if err != nil && ctx.Err() == nil {
		o.fail()
	}
	return w, err
}

// IsWatchListSemanticsUnSupported keeps what the wrapped client says, so
// a fake clientset in unit tests still lists and watches.
func (o observed) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(o.lw)
}
