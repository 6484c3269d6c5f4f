package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// The webhook authenticator and authorizer are written here rather than
// taken from k8s.io/apiserver's delegating factories: those pull the
// apiserver's tracing, egress selector, CEL match conditions and etcd-backed
// packages (~430 packages) into the binary, and their init code and type
// data are most of a kubelet's resident memory. What is left out: the
// retries with back-off (a failed review fails that request; the client
// retries) and the metrics.

// TokenReviewer creates TokenReviews (client.TokenReviews()).
type TokenReviewer interface {
	Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// SubjectAccessReviewer creates SubjectAccessReviews (client.SubjectAccessReviews()).
type SubjectAccessReviewer interface {
	Create(ctx context.Context, sar *authzv1.SubjectAccessReview, opts metav1.CreateOptions) (*authzv1.SubjectAccessReview, error)
}

// ErrReview is a review the API server answered with an error.
var ErrReview = errors.New("review failed")

// tokenWebhook authenticates a bearer token with a TokenReview, as
// upstream's webhook token authenticator without audiences.
type tokenWebhook struct{ client TokenReviewer }

func (t tokenWebhook) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	tr, err := t.client.Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("token review: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		if st.Error != "" {
			return nil, false, fmt.Errorf("%w: %s", ErrReview, st.Error)
		}
		return nil, false, nil
	}
	var extra map[string][]string
	if len(st.User.Extra) > 0 {
		extra = map[string][]string{}
		for k, v := range st.User.Extra {
			extra[k] = v
		}
	}
	return &authenticator.Response{Audiences: st.Audiences,
		User: &user.DefaultInfo{Name: st.User.Username, UID: st.User.UID, Groups: st.User.Groups, Extra: extra}}, true, nil
}

// sarWebhook authorizes with a SubjectAccessReview and caches answers:
// allowed for allowTTL, denied for denyTTL (upstream's 5 min and 30 s).
type sarWebhook struct {
	client            SubjectAccessReviewer
	allowTTL, denyTTL time.Duration
	cache             *utilcache.LRUExpireCache
}

func newSARWebhook(c SubjectAccessReviewer, allowTTL, denyTTL time.Duration) *sarWebhook {
	return &sarWebhook{client: c, allowTTL: allowTTL, denyTTL: denyTTL, cache: utilcache.NewLRUExpireCache(8192)}
}

func (w *sarWebhook) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	spec := authzv1.SubjectAccessReviewSpec{}
	if u := a.GetUser(); u != nil {
		spec.User, spec.UID, spec.Groups = u.GetName(), u.GetUID(), u.GetGroups()
		if ex := u.GetExtra(); len(ex) > 0 {
			spec.Extra = map[string]authzv1.ExtraValue{}
			for k, v := range ex {
				spec.Extra[k] = v
			}
		}
	}
	if a.IsResourceRequest() {
		spec.ResourceAttributes = &authzv1.ResourceAttributes{Namespace: a.GetNamespace(), Verb: a.GetVerb(),
			Group: a.GetAPIGroup(), Version: a.GetAPIVersion(), Resource: a.GetResource(),
			Subresource: a.GetSubresource(), Name: a.GetName()}
	} else {
		spec.NonResourceAttributes = &authzv1.NonResourceAttributes{Path: a.GetPath(), Verb: a.GetVerb()}
	}
	key, err := json.Marshal(spec)
	if err != nil {
		return authorizer.DecisionNoOpinion, "", err
	}
	var st authzv1.SubjectAccessReviewStatus
	if v, ok := w.cache.Get(string(key)); ok {
		st = v.(authzv1.SubjectAccessReviewStatus)
	} else {
		r, err := w.client.Create(ctx, &authzv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			return authorizer.DecisionNoOpinion, "", fmt.Errorf("subject access review: %w", err)
		}
		st = r.Status
		ttl := w.denyTTL
		if st.Allowed {
			ttl = w.allowTTL
		}
		w.cache.Add(string(key), st, ttl)
	}
	switch {
	case st.Denied && st.Allowed:
		return authorizer.DecisionDeny, st.Reason, fmt.Errorf("%w: both allowed and denied", ErrReview)
	case st.Denied:
		return authorizer.DecisionDeny, st.Reason, nil
	case st.Allowed:
		return authorizer.DecisionAllow, st.Reason, nil
	}
	return authorizer.DecisionNoOpinion, st.Reason, nil
}

// alwaysAllow is authorization mode AlwaysAllow.
type alwaysAllow struct{}

func (alwaysAllow) Authorize(context.Context, authorizer.Attributes) (authorizer.Decision, string, error) {
	return authorizer.DecisionAllow, "", nil
}
