package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
)

type fakeTokenReviewer struct {
	status authnv1.TokenReviewStatus
	err    error
}

func (f fakeTokenReviewer) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := tr.DeepCopy()
	out.Status = f.status
	return out, nil
}

var errAPI = errors.New("api server down")

func TestTokenWebhook(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rev     fakeTokenReviewer
		want    *authenticator.Response
		ok      bool
		wantErr error
	}{
		{name: "authenticated", rev: fakeTokenReviewer{status: authnv1.TokenReviewStatus{Authenticated: true,
			User: authnv1.UserInfo{Username: "bob", UID: "u1", Groups: []string{"g"}, Extra: map[string]authnv1.ExtraValue{"k": {"v"}}}}},
			want: &authenticator.Response{User: &user.DefaultInfo{Name: "bob", UID: "u1", Groups: []string{"g"}, Extra: map[string][]string{"k": {"v"}}}},
			ok:   true},
		{name: "not authenticated", rev: fakeTokenReviewer{}},
		{name: "review error", rev: fakeTokenReviewer{status: authnv1.TokenReviewStatus{Error: "bad token"}}, wantErr: ErrReview},
		{name: "api error", rev: fakeTokenReviewer{err: errAPI}, wantErr: errAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tokenWebhook{tc.rev}.AuthenticateToken(context.Background(), "tok")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if ok != tc.ok {
				t.Errorf("ok %v, want %v", ok, tc.ok)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// countingSAR allows user alice and counts the reviews it was asked for.
type countingSAR struct {
	asked []authzv1.SubjectAccessReviewSpec
}

func (c *countingSAR) Create(_ context.Context, sar *authzv1.SubjectAccessReview, _ metav1.CreateOptions) (*authzv1.SubjectAccessReview, error) {
	c.asked = append(c.asked, sar.Spec)
	out := sar.DeepCopy()
	out.Status.Allowed = sar.Spec.User == "alice"
	if !out.Status.Allowed {
		out.Status.Reason = "not alice"
	}
	return out, nil
}

func TestSARWebhook(t *testing.T) {
	rev := &countingSAR{}
	w := newSARWebhook(rev, time.Minute, time.Minute)
	attrs := func(name string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: &user.DefaultInfo{Name: name, Groups: []string{"system:authenticated"}},
			Verb: "get", APIVersion: "v1", Resource: "nodes", Subresource: "log", Name: "n1", ResourceRequest: true, Path: "/logs/"}
	}
	type decision struct {
		Dec    authorizer.Decision
		Reason string
	}
	var got []decision
	for _, u := range []string{"alice", "mallory", "alice", "mallory"} {
		dec, reason, err := w.Authorize(context.Background(), attrs(u))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, decision{dec, reason})
	}
	// Not allowed is no opinion (not denied), as upstream; the server refuses both.
	want := []decision{{authorizer.DecisionAllow, ""}, {authorizer.DecisionNoOpinion, "not alice"}, {authorizer.DecisionAllow, ""}, {authorizer.DecisionNoOpinion, "not alice"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("decisions (-want +got):\n%s", d)
	}
	// The repeated questions were answered from the cache.
	spec := func(name string) authzv1.SubjectAccessReviewSpec {
		return authzv1.SubjectAccessReviewSpec{User: name, Groups: []string{"system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: "get", Version: "v1", Resource: "nodes", Subresource: "log", Name: "n1"}}
	}
	if d := cmp.Diff([]authzv1.SubjectAccessReviewSpec{spec("alice"), spec("mallory")}, rev.asked); d != "" {
		t.Errorf("reviews (-want +got):\n%s", d)
	}
}

// writeCA writes a CA certificate to dir and returns it with its key.
func writeCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	path := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca, key, path
}

func clientCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, orgs ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// TestBuildAuth runs the authenticator BuildAuth assembles against a fake
// API server: client certificates of the CA, bearer tokens through
// TokenReview, and nothing else unless anonymous is enabled.
func TestBuildAuth(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile := writeCA(t, dir)
	otherCA, otherKey, _ := writeCA(t, t.TempDir())
	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "good" {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:ns:sa"}}
		}
		return true, tr, nil
	})
	type who struct {
		Name   string
		Groups []string
		OK     bool
	}
	req := func(token string, cert *x509.Certificate) *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "https://node:10250/pods", nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		if cert != nil {
			r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
		}
		return r
	}
	for _, anon := range []bool{false, true} {
		cfg := Config{Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: caFile},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(anon)},
		}, Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook}}
		authn, authz, _, err := BuildAuth(apiclienttest.New(client), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if authz == nil {
			t.Fatal("no authorizer")
		}
		var got []who
		for _, r := range []*http.Request{
			req("", clientCert(t, ca, caKey, "apiserver-kubelet-client", "system:masters")),
			req("good", nil),
			req("bad", nil),
			req("", clientCert(t, otherCA, otherKey, "intruder")),
			req("", nil),
		} {
			resp, ok, _ := authn.AuthenticateRequest(r)
			w := who{OK: ok}
			if ok {
				w.Name, w.Groups = resp.User.GetName(), resp.User.GetGroups()
			}
			got = append(got, w)
		}
		want := []who{
			{Name: "apiserver-kubelet-client", Groups: []string{"system:masters", "system:authenticated"}, OK: true},
			{Name: "system:serviceaccount:ns:sa", Groups: []string{"system:authenticated"}, OK: true},
			{}, {}, {},
		}
		if anon {
			// Only a request without credentials is anonymous: a bad
			// token or certificate stays refused, as upstream.
			want[4] = who{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}, OK: true}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("anonymous=%v (-want +got):\n%s", anon, d)
		}
	}
}
