// Package podsource feeds the pod workers: Pods bound to this node from the
// API server (a field-selected informer) and static Pods from a manifest
// directory, with their mirror Pods.
package podsource

import (
	"context"
	"fmt"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
	"github.com/nodesuite/nodesuite/kubelet/internal/objectcache"
)

// Sink receives Pods.
type Sink interface {
	Update(pod *v1.Pod)
	Remove(uid types.UID)
}

// MirrorAnnotation marks a mirror Pod (the API copy of a static Pod).
const MirrorAnnotation = "kubernetes.io/config.mirror"

// APIServer watches the Pods bound to the node and the Services env needs.
type APIServer struct {
	Client   apiclient.Interface
	NodeName string
	Sink     Sink

	pods        cache.SharedIndexInformer
	svcInformer cache.SharedIndexInformer
	services    corelisters.ServiceLister
	// objects are the ConfigMaps and Secrets the Pods reference, each
	// watched while a Pod references it.
	objects *objectcache.Pods
}

// Start starts the informers; WaitForSync waits for their first lists.
// They are built from client-go's cache package directly: the informers
// factory links every API group's informer and lister into the binary.
func (a *APIServer) Start(ctx context.Context) {
	rc := a.Client.CoreREST()
	a.objects = NewObjects(ctx, a.Client, rc)
	pods := cache.NewFilteredListWatchFromClient(rc, "pods", metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.NodeName).String()
	})
	a.pods = cache.NewSharedIndexInformer(pods, &v1.Pod{}, 0, cache.Indexers{})
	_ = a.pods.SetTransform(StripManagedFields)
	_, _ = a.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.update(o) },
		UpdateFunc: func(_, o any) { a.update(o) },
		DeleteFunc: func(o any) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*v1.Pod); ok && !isMirror(p) {
				a.Sink.Remove(p.UID)
				a.objects.Unregister(p.UID)
			}
		},
	})
	services := cache.NewListWatchFromClient(rc, "services", metav1.NamespaceAll, fields.Everything())
	a.svcInformer = cache.NewSharedIndexInformer(services, &v1.Service{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = a.svcInformer.SetTransform(StripManagedFields)
	a.services = corelisters.NewServiceLister(a.svcInformer.GetIndexer())
	go a.pods.RunWithContext(ctx)
	go a.svcInformer.RunWithContext(ctx)
}

// StripManagedFields is the informers' transform: the kubelet never reads
// managedFields, often the largest part of a cached object.
func StripManagedFields(o any) (any, error) {
	if m, err := meta.Accessor(o); err == nil {
		m.SetManagedFields(nil)
	}
	return o, nil
}

func (a *APIServer) update(o any) {
	p, ok := o.(*v1.Pod)
	if !ok || isMirror(p) {
		return // mirror Pods are the static source's business
	}
	// Before the worker sees the Pod, so its first sync finds the watches started.
	a.objects.Register(p)
	a.Sink.Update(p)
}

func isMirror(p *v1.Pod) bool {
	_, ok := p.Annotations[MirrorAnnotation]
	return ok
}

// WaitForSync waits until the informers listed once.
func (a *APIServer) WaitForSync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), a.svcInformer.HasSynced) {
		return fmt.Errorf("service informer did not sync: %w", ctx.Err())
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced) {
		return fmt.Errorf("pod informer did not sync: %w", ctx.Err())
	}
	return nil
}

// NewObjects builds the watch-based ConfigMap and Secret caches over the
// client (rc lists and watches core/v1 objects).
func NewObjects(ctx context.Context, client apiclient.Interface, rc cache.Getter) *objectcache.Pods {
	one := func(resource string) func(ns, name string) cache.ListerWatcher {
		return func(ns, name string) cache.ListerWatcher {
			return cache.NewFilteredListWatchFromClient(rc, resource, ns, func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			})
		}
	}
	cms := &objectcache.Cache[*v1.ConfigMap]{ListWatch: one("configmaps"), New: func() *v1.ConfigMap { return &v1.ConfigMap{} },
		Resource: v1.Resource("configmaps"),
		Fetch: func(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
			return client.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		},
		Immutable: func(o *v1.ConfigMap) bool { return o.Immutable != nil && *o.Immutable }}
	secrets := &objectcache.Cache[*v1.Secret]{ListWatch: one("secrets"), New: func() *v1.Secret { return &v1.Secret{} },
		Resource: v1.Resource("secrets"),
		Fetch: func(ctx context.Context, ns, name string) (*v1.Secret, error) {
			return client.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		Immutable: func(o *v1.Secret) bool { return o.Immutable != nil && *o.Immutable }}
	cms.Start(ctx)
	secrets.Start(ctx)
	return &objectcache.Pods{ConfigMaps: cms, Secrets: secrets}
}

// ConfigMap reads a ConfigMap for volumes and env, from its watch while a
// Pod references it.
func (a *APIServer) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	if a.objects == nil { // not started
		return a.Client.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	}
	return a.objects.ConfigMaps.Get(ctx, ns, name)
}

// Secret reads a Secret for volumes, env and image pulls, from its watch
// while a Pod references it.
func (a *APIServer) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	if a.objects == nil {
		return a.Client.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	}
	return a.objects.Secrets.Get(ctx, ns, name)
}

// Services lists every Service from the informer's cache.
func (a *APIServer) Services(context.Context) ([]*v1.Service, error) {
	return a.services.List(labels.Everything())
}

// Token requests a ServiceAccount token for a projected volume.
func (a *APIServer) Token(ctx context.Context, ns, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	return a.Client.ServiceAccounts(ns).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}
