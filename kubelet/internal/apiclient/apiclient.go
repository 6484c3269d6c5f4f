// Package apiclient is the kubelet's API client: typed clients for only the
// resources the kubelet calls. client-go's kubernetes clientset registers
// every API group in its scheme and links every group's typed client and
// apply configurations; its init and type data were most of the kubelet's
// resident memory. The clients here are client-go's own generic typed
// clients (gentype) over REST clients whose scheme holds the five groups used.
package apiclient

import (
	"context"
	"fmt"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Interface is what the kubelet calls on the API server. *Client implements
// it; apiclienttest adapts client-go's fake clientset for unit tests.
type Interface interface {
	Pods(namespace string) Pods
	Nodes() Nodes
	ConfigMaps(namespace string) Getter[*v1.ConfigMap]
	Secrets(namespace string) Getter[*v1.Secret]
	ServiceAccounts(namespace string) TokenCreator
	Events(namespace string) Events
	Leases(namespace string) Leases
	TokenReviews() Creator[*authnv1.TokenReview]
	SubjectAccessReviews() Creator[*authzv1.SubjectAccessReview]
	RuntimeClasses() Getter[*nodev1.RuntimeClass]
	// CoreREST lists and watches core/v1 resources for informers.
	CoreREST() rest.Interface
}

// Getter reads one object.
type Getter[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
}

// Creator creates one object (reviews are only created).
type Creator[T any] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
}

// Pods are the calls the kubelet makes on Pods (mirror Pods and status).
type Pods interface {
	Getter[*v1.Pod]
	Creator[*v1.Pod]
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*v1.Pod, error)
}

// Nodes are the calls on this kubelet's Node.
type Nodes interface {
	Getter[*v1.Node]
	Creator[*v1.Node]
	Update(ctx context.Context, obj *v1.Node, opts metav1.UpdateOptions) (*v1.Node, error)
	UpdateStatus(ctx context.Context, obj *v1.Node, opts metav1.UpdateOptions) (*v1.Node, error)
}

// Leases are the calls on the node's Lease.
type Leases interface {
	Getter[*coordinationv1.Lease]
	Creator[*coordinationv1.Lease]
	Update(ctx context.Context, obj *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error)
}

// Events are the calls the event recorder's sink makes.
type Events interface {
	Creator[*v1.Event]
	Update(ctx context.Context, obj *v1.Event, opts metav1.UpdateOptions) (*v1.Event, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*v1.Event, error)
}

// TokenCreator requests ServiceAccount tokens (the token subresource).
type TokenCreator interface {
	CreateToken(ctx context.Context, name string, req *authnv1.TokenRequest, opts metav1.CreateOptions) (*authnv1.TokenRequest, error)
}

// Scheme holds only the API groups the kubelet uses; Events are recorded
// against it (the recorder looks up object kinds there).
var Scheme = runtime.NewScheme()

var (
	codecs         = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{v1.AddToScheme, coordinationv1.AddToScheme,
		authnv1.AddToScheme, authzv1.AddToScheme, nodev1.AddToScheme} {
		if err := add(Scheme); err != nil {
			panic(err) // only a programming error: duplicate registration
		}
	}
	// List/Get/Delete options as query parameters, as client-go's scheme has them.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
}

// Client implements Interface over one REST client per API group, sharing
// one HTTP client and one rate limiter as client-go's clientset does.
type Client struct {
	core, coordination, authn, authz, node rest.Interface
}

var _ Interface = (*Client)(nil)

// New builds the client from a rest.Config (QPS/Burst, content type and
// user agent as the caller set them).
func New(c *rest.Config) (*Client, error) {
	c = rest.CopyConfig(c)
	if c.RateLimiter == nil && c.QPS > 0 {
		c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(c.QPS, c.Burst)
	}
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("http client: %w", err)
	}
	group := func(apiPath string, gv schema.GroupVersion) (rest.Interface, error) {
		gc := rest.CopyConfig(c)
		gc.APIPath, gc.GroupVersion = apiPath, &gv
		gc.NegotiatedSerializer = codecs.WithoutConversion()
		rc, err := rest.RESTClientForConfigAndClient(gc, hc)
		if err != nil {
			return nil, fmt.Errorf("%s client: %w", gv, err)
		}
		return rc, nil
	}
	var cl Client
	for _, g := range []struct {
		into    *rest.Interface
		apiPath string
		gv      schema.GroupVersion
	}{
		{&cl.core, "/api", v1.SchemeGroupVersion},
		{&cl.coordination, "/apis", coordinationv1.SchemeGroupVersion},
		{&cl.authn, "/apis", authnv1.SchemeGroupVersion},
		{&cl.authz, "/apis", authzv1.SchemeGroupVersion},
		{&cl.node, "/apis", nodev1.SchemeGroupVersion},
	} {
		if *g.into, err = group(g.apiPath, g.gv); err != nil {
			return nil, err
		}
	}
	return &cl, nil
}

// typed is a generic typed client, preferring protobuf as client-go's do.
func typed[T interface {
	*E
	runtime.Object
	metav1.Object
}, E any](resource string, rc rest.Interface, ns string) *gentype.Client[T] {
	return gentype.NewClient[T](resource, rc, parameterCodec, ns, func() T { return T(new(E)) }, gentype.PrefersProtobuf[T]())
}

func (c *Client) Pods(ns string) Pods { return typed[*v1.Pod]("pods", c.core, ns) }
func (c *Client) Nodes() Nodes        { return typed[*v1.Node]("nodes", c.core, "") }
func (c *Client) ConfigMaps(ns string) Getter[*v1.ConfigMap] {
	return typed[*v1.ConfigMap]("configmaps", c.core, ns)
}
func (c *Client) Secrets(ns string) Getter[*v1.Secret] {
	return typed[*v1.Secret]("secrets", c.core, ns)
}
func (c *Client) Events(ns string) Events                { return typed[*v1.Event]("events", c.core, ns) }
func (c *Client) ServiceAccounts(ns string) TokenCreator { return tokens{c.core, ns} }
func (c *Client) CoreREST() rest.Interface               { return c.core }
func (c *Client) Leases(ns string) Leases {
	return typed[*coordinationv1.Lease]("leases", c.coordination, ns)
}
func (c *Client) RuntimeClasses() Getter[*nodev1.RuntimeClass] {
	return typed[*nodev1.RuntimeClass]("runtimeclasses", c.node, "")
}

func (c *Client) TokenReviews() Creator[*authnv1.TokenReview] {
	return typed[*authnv1.TokenReview]("tokenreviews", c.authn, "")
}

func (c *Client) SubjectAccessReviews() Creator[*authzv1.SubjectAccessReview] {
	return typed[*authzv1.SubjectAccessReview]("subjectaccessreviews", c.authz, "")
}

// tokens is the serviceaccounts/token subresource, which gentype lacks.
type tokens struct {
	rc rest.Interface
	ns string
}

func (t tokens) CreateToken(ctx context.Context, name string, req *authnv1.TokenRequest, opts metav1.CreateOptions) (*authnv1.TokenRequest, error) {
	out := &authnv1.TokenRequest{}
	err := t.rc.Post().UseProtobufAsDefault().Namespace(t.ns).Resource("serviceaccounts").Name(name).SubResource("token").
		VersionedParams(&opts, parameterCodec).Body(req).Do(ctx).Into(out)
	return out, err
}

// EventSink is the event recorder's sink (client-go's EventSinkImpl needs
// the typed core client): each Event goes to its own namespace.
type EventSink struct{ Client Interface }

func (s EventSink) Create(e *v1.Event) (*v1.Event, error) {
	return s.Client.Events(e.Namespace).Create(context.TODO(), e, metav1.CreateOptions{})
}

func (s EventSink) Update(e *v1.Event) (*v1.Event, error) {
	return s.Client.Events(e.Namespace).Update(context.TODO(), e, metav1.UpdateOptions{})
}

func (s EventSink) Patch(e *v1.Event, data []byte) (*v1.Event, error) {
	return s.Client.Events(e.Namespace).Patch(context.TODO(), e.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
}
