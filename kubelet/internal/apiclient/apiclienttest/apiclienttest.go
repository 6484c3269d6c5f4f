// Package apiclienttest adapts client-go's fake clientset to
// apiclient.Interface for unit tests. Only tests import it, so the
// clientset it links stays out of the kubelet binary.
package apiclienttest

import (
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
)

// Client wraps a clientset (usually fake.NewClientset()).
type Client struct{ kubernetes.Interface }

// New wraps cs.
func New(cs kubernetes.Interface) Client { return Client{cs} }

var _ apiclient.Interface = Client{}

func (c Client) Pods(ns string) apiclient.Pods { return c.CoreV1().Pods(ns) }
func (c Client) Nodes() apiclient.Nodes        { return c.CoreV1().Nodes() }
func (c Client) ConfigMaps(ns string) apiclient.Getter[*v1.ConfigMap] {
	return c.CoreV1().ConfigMaps(ns)
}
func (c Client) Secrets(ns string) apiclient.Getter[*v1.Secret] { return c.CoreV1().Secrets(ns) }
func (c Client) ServiceAccounts(ns string) apiclient.TokenCreator {
	return c.CoreV1().ServiceAccounts(ns)
}
func (c Client) Events(ns string) apiclient.Events { return c.CoreV1().Events(ns) }
func (c Client) Leases(ns string) apiclient.Leases { return c.CoordinationV1().Leases(ns) }
func (c Client) TokenReviews() apiclient.Creator[*authnv1.TokenReview] {
	return c.AuthenticationV1().TokenReviews()
}
func (c Client) SubjectAccessReviews() apiclient.Creator[*authzv1.SubjectAccessReview] {
	return c.AuthorizationV1().SubjectAccessReviews()
}
func (c Client) RuntimeClasses() apiclient.Getter[*nodev1.RuntimeClass] {
	return c.NodeV1().RuntimeClasses()
}
func (c Client) CoreREST() rest.Interface { return c.CoreV1().RESTClient() }
