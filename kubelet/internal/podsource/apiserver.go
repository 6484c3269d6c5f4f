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
}

// Start starts the informers; WaitForSync waits for their first lists.
// They are built from client-go's cache package directly: the informers
// factory links every API group's informer and lister into the binary.
func (a *APIServer) Start(ctx context.Context) {
	rc := a.Client.CoreREST()
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

// ConfigMap reads a ConfigMap for env.
func (a *APIServer) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	return a.Client.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

// Secret reads a Secret for env and image pulls.
func (a *APIServer) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	return a.Client.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// Services lists every Service from the informer's cache.
func (a *APIServer) Services(context.Context) ([]*v1.Service, error) {
	return a.services.List(labels.Everything())
}

// Token requests a ServiceAccount token for a projected volume.
func (a *APIServer) Token(ctx context.Context, ns, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	return a.Client.ServiceAccounts(ns).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}
