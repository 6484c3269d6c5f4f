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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
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
	Client   kubernetes.Interface
	NodeName string
	Sink     Sink

	pods     cache.SharedIndexInformer
	services corelisters.ServiceLister
	factory  informers.SharedInformerFactory
}

// Start starts the informers; WaitForSync waits for their first lists.
func (a *APIServer) Start(ctx context.Context) {
	pf := informers.NewSharedInformerFactoryWithOptions(a.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.NodeName).String()
	}))
	a.pods = pf.Core().V1().Pods().Informer()
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
	a.factory = informers.NewSharedInformerFactory(a.Client, 0)
	a.services = a.factory.Core().V1().Services().Lister()
	pf.Start(ctx.Done())
	a.factory.Start(ctx.Done())
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
	for _, ok := range a.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("service informer did not sync: %w", ctx.Err())
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced) {
		return fmt.Errorf("pod informer did not sync: %w", ctx.Err())
	}
	return nil
}

// ConfigMap reads a ConfigMap for env.
func (a *APIServer) ConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	return a.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

// Secret reads a Secret for env and image pulls.
func (a *APIServer) Secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	return a.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// Services lists every Service from the informer's cache.
func (a *APIServer) Services(context.Context) ([]*v1.Service, error) {
	return a.services.List(labels.Everything())
}

// Token requests a ServiceAccount token for a projected volume.
func (a *APIServer) Token(ctx context.Context, ns, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error) {
	return a.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, serviceAccount, req, metav1.CreateOptions{})
}
