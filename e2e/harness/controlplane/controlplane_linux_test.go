package controlplane

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestStart brings up a real control plane beside whatever else runs on the
// host and checks what tests rely on: the admin kubeconfig works, a minted
// client certificate authenticates as the asked user (RBAC decides with it),
// and the server answers at 127.0.0.1 too (ServerFor).
func TestStart(t *testing.T) {
	if os.Getenv("NODESUITE_CONTROLPLANE_IT") == "" {
		t.Skip("set NODESUITE_CONTROLPLANE_IT=1 (needs the artifact cache's etcd and kube-apiserver)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := Start(ctx, Options{Dir: t.TempDir(), Log: zaptest.NewLogger(t), ExtraIPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Stop()

	cfg, err := cp.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(cfg)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cp-test"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("admin create: %v", err)
	}

	kc, err := cp.Kubeconfig("proxy", "system:kube-proxy")
	if err != nil {
		t.Fatal(err)
	}
	pcfg, err := clientcmd.BuildConfigFromFlags(cp.ServerFor(net.ParseIP("127.0.0.1")), kc)
	if err != nil {
		t.Fatal(err)
	}
	proxy := kubernetes.NewForConfigOrDie(pcfg)
	// system:node-proxier (bound to system:kube-proxy by default policy)
	// may list EndpointSlices but not create namespaces.
	if _, err := proxy.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("kube-proxy identity cannot list EndpointSlices: %v", err)
	}
	review, err := proxy.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authv1.ResourceAttributes{Verb: "create", Resource: "namespaces"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if review.Status.Allowed {
		t.Errorf("system:kube-proxy may create namespaces: the minted certificate is not that user")
	}

	cp.Stop()
	if _, err := admin.CoreV1().Namespaces().Get(ctx, "cp-test", metav1.GetOptions{}); err == nil {
		t.Errorf("API server still answers after Stop")
	}
}
