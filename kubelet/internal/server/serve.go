package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/websocket"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	tokencache "k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	certutil "k8s.io/client-go/util/cert"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
)

// Config is the server's part of the KubeletConfiguration.
type Config struct {
	Address        string // default 0.0.0.0
	Port           int32  // default 10250
	TLSCertFile    string // empty: a self-signed certificate under CertDir, as upstream
	TLSKeyFile     string
	CertDir        string
	Hostname       string
	IPs            []net.IP
	Authentication kubeletv1beta1.KubeletAuthentication
	Authorization  kubeletv1beta1.KubeletAuthorization
}

// ErrConfig is a server configuration that cannot work.
var ErrConfig = errors.New("kubelet server config")

// ErrNoClient is webhook authentication or authorization without an API server.
var ErrNoClient = errors.New("webhook authentication and authorization need an API server")

// BuildAuth builds the request authenticator and authorizer from the config
// as upstream's kubelet does (x509 client certificates, webhook
// TokenReview with a cache, anonymous, webhook SubjectAccessReview with a
// cache), from k8s.io/apiserver's light request authenticators and the
// webhooks in webhook.go; run is kept for the callers (nothing to start:
// the client CA file is re-read when it changes).
func BuildAuth(client apiclient.Interface, cfg Config) (authenticator.Request, authorizer.UnconditionalAuthorizer, func(context.Context), error) {
	an := cfg.Authentication
	var authns []authenticator.Request
	if an.X509.ClientCAFile != "" {
		ca, err := newCAFile(an.X509.ClientCAFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: clientCAFile: %w", ErrConfig, err)
		}
		authns = append(authns, x509request.NewDynamic(ca.verifyOptions, x509request.CommonNameUserConversion))
	}
	if ptr.Deref(an.Webhook.Enabled, false) {
		if client == nil {
			return nil, nil, nil, fmt.Errorf("%w: authentication.webhook", ErrNoClient)
		}
		ttl := an.Webhook.CacheTTL.Duration
		if ttl == 0 {
			ttl = 2 * time.Minute
		}
		tokens := tokencache.New(tokenWebhook{client.TokenReviews()}, false, ttl, ttl)
		authns = append(authns, bearertoken.New(tokens), websocket.NewProtocolAuthenticator(tokens))
	}
	anon := ptr.Deref(an.Anonymous.Enabled, false)
	var authn authenticator.Request
	switch {
	case len(authns) == 0 && anon:
		authn = anonymous.NewAuthenticator(nil)
	case len(authns) == 0:
		return nil, nil, nil, fmt.Errorf("%w: no authentication method configured", ErrConfig)
	default:
		authn = group.NewAuthenticatedGroupAdder(union.New(authns...))
		if anon {
			authn = union.NewFailOnError(authn, anonymous.NewAuthenticator(nil))
		}
	}
	var authz authorizer.UnconditionalAuthorizer
	switch cfg.Authorization.Mode {
	case kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow:
		authz = alwaysAllow{}
	case kubeletv1beta1.KubeletAuthorizationModeWebhook, "":
		if client == nil {
			return nil, nil, nil, fmt.Errorf("%w: authorization.mode Webhook", ErrNoClient)
		}
		allow, deny := cfg.Authorization.Webhook.CacheAuthorizedTTL.Duration, cfg.Authorization.Webhook.CacheUnauthorizedTTL.Duration
		if allow == 0 {
			allow = 5 * time.Minute
		}
		if deny == 0 {
			deny = 30 * time.Second
		}
		authz = newSARWebhook(client.SubjectAccessReviews(), allow, deny)
	default:
		return nil, nil, nil, fmt.Errorf("%w: unknown authorization mode %q", ErrConfig, cfg.Authorization.Mode)
	}
	return authn, authz, func(context.Context) {}, nil
}

// caFile is the client CA bundle, re-read when its modification time changes.
type caFile struct {
	path  string
	mu    sync.Mutex
	mtime time.Time
	opts  x509.VerifyOptions
}

func newCAFile(path string) (*caFile, error) {
	c := &caFile{path: path}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *caFile) load() error {
	fi, err := os.Stat(c.path)
	if err != nil {
		return err
	}
	if fi.ModTime().Equal(c.mtime) {
		return nil
	}
	data, err := os.ReadFile(c.path)
	if err != nil {
		return err
	}
	pool, err := certutil.NewPoolFromBytes(data)
	if err != nil {
		return err
	}
	c.mtime = fi.ModTime()
	c.opts = x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	return nil
}

// verifyOptions is x509request.VerifyOptionFunc; a bundle that became
// unreadable keeps the last good one, as upstream's file watcher does.
func (c *caFile) verifyOptions() (x509.VerifyOptions, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.load()
	return c.opts, c.opts.Roots != nil
}

// ListenAndServe serves h over TLS until ctx ends.
func ListenAndServe(ctx context.Context, log *zap.Logger, cfg Config, h http.Handler) error {
	certFile, keyFile := cfg.TLSCertFile, cfg.TLSKeyFile
	if certFile == "" {
		var err error
		if certFile, keyFile, err = selfSigned(cfg); err != nil {
			return err
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("%w: serving certificate: %w", ErrConfig, err)
	}
	addr := net.JoinHostPort(cfg.Address, fmt.Sprint(cfg.Port))
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			// Client certificates are verified by the x509 authenticator.
			ClientAuth: tls.RequestClientCert}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("kubelet server: %w", err)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("kubelet API serving", zap.String("address", addr))
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("kubelet server: %w", err)
	}
	return nil
}

// selfSigned writes (once) a self-signed serving pair under CertDir, the
// upstream kubelet's behaviour without tlsCertFile.
func selfSigned(cfg Config) (string, string, error) {
	certFile := filepath.Join(cfg.CertDir, "kubelet.crt")
	keyFile := filepath.Join(cfg.CertDir, "kubelet.key")
	if _, err := os.Stat(certFile); err == nil {
		return certFile, keyFile, nil
	}
	c, k, err := certutil.GenerateSelfSignedCertKey(cfg.Hostname, cfg.IPs, nil)
	if err != nil {
		return "", "", fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := os.MkdirAll(cfg.CertDir, 0o700); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certFile, c, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
