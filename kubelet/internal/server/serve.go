package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"
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

// BuildAuth builds the request authenticator and authorizer from the
// config with k8s.io/apiserver's delegating factories, as upstream's
// kubelet does; run starts the client CA file watcher.
func BuildAuth(client kubernetes.Interface, cfg Config) (authenticator.Request, authorizer.UnconditionalAuthorizer, func(context.Context), error) {
	an := cfg.Authentication
	ac := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous: &apiserver.AnonymousAuthConfig{Enabled: ptr.Deref(an.Anonymous.Enabled, false)},
		CacheTTL:  an.Webhook.CacheTTL.Duration,
	}
	if ac.CacheTTL == 0 {
		ac.CacheTTL = 2 * time.Minute
	}
	var ca *dynamiccertificates.DynamicFileCAContent
	if an.X509.ClientCAFile != "" {
		var err error
		if ca, err = dynamiccertificates.NewDynamicCAContentFromFile("client-ca-bundle", an.X509.ClientCAFile); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: clientCAFile: %w", ErrConfig, err)
		}
		ac.ClientCertificateCAContentProvider = ca
	}
	if ptr.Deref(an.Webhook.Enabled, false) {
		if client == nil {
			return nil, nil, nil, fmt.Errorf("%w: authentication.webhook", ErrNoClient)
		}
		ac.WebhookRetryBackoff = options.DefaultAuthWebhookRetryBackoff()
		ac.TokenAccessReviewClient = client.AuthenticationV1()
	}
	authn, _, err := ac.New()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: authentication: %w", ErrConfig, err)
	}
	var authz authorizer.UnconditionalAuthorizer
	switch cfg.Authorization.Mode {
	case kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow:
		authz = authorizerfactory.NewAlwaysAllowAuthorizer()
	case kubeletv1beta1.KubeletAuthorizationModeWebhook, "":
		if client == nil {
			return nil, nil, nil, fmt.Errorf("%w: authorization.mode Webhook", ErrNoClient)
		}
		zc := authorizerfactory.DelegatingAuthorizerConfig{
			SubjectAccessReviewClient: client.AuthorizationV1(),
			AllowCacheTTL:             cfg.Authorization.Webhook.CacheAuthorizedTTL.Duration,
			DenyCacheTTL:              cfg.Authorization.Webhook.CacheUnauthorizedTTL.Duration,
			WebhookRetryBackoff:       options.DefaultAuthWebhookRetryBackoff(),
		}
		if zc.AllowCacheTTL == 0 {
			zc.AllowCacheTTL = 5 * time.Minute
		}
		if zc.DenyCacheTTL == 0 {
			zc.DenyCacheTTL = 30 * time.Second
		}
		if authz, err = zc.New(); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: authorization: %w", ErrConfig, err)
		}
	default:
		return nil, nil, nil, fmt.Errorf("%w: unknown authorization mode %q", ErrConfig, cfg.Authorization.Mode)
	}
	run := func(ctx context.Context) {
		if ca != nil {
			go ca.Run(ctx, 1)
		}
	}
	return authn, authz, run, nil
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
