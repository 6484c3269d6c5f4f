package prober

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	internalapi "k8s.io/cri-api/pkg/apis"
)

// ErrProbe is a probe that cannot be run as specified.
var ErrProbe = errors.New("probe")

// CRIRunner runs probes: exec through the CRI runtime, the rest from the
// host to the Pod's IP (the upstream kubelet does the same).
type CRIRunner struct {
	Runtime internalapi.RuntimeService
	// UserAgent is sent with HTTP probes, as upstream's kube-probe/<version>.
	UserAgent string
}

// maxOutput is how much probe output upstream keeps for messages.
const maxOutput = 10 * 1024

// Run runs one attempt.
func (r CRIRunner) Run(ctx context.Context, p *v1.Probe, t Target) (bool, string, error) {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	switch {
	case p.Exec != nil:
		stdout, stderr, err := r.Runtime.ExecSync(ctx, t.ContainerID, p.Exec.Command, timeout)
		out := string(stdout) + string(stderr)
		if len(out) > maxOutput {
			out = out[:maxOutput]
		}
		if err != nil {
			// A non-zero exit is a failure, not an error, for ExecSync.
			return false, out, err
		}
		return true, out, nil
	case p.HTTPGet != nil:
		return r.http(ctx, p.HTTPGet, t, timeout)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, t.Container)
		if err != nil {
			return false, "", err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = t.PodIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, "", err
		}
		_ = conn.Close()
		return true, "", nil
	case p.GRPC != nil:
		conn, err := grpc.NewClient(net.JoinHostPort(t.PodIP, strconv.Itoa(int(p.GRPC.Port))),
			grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(r.UserAgent))
		if err != nil {
			return false, "", err
		}
		defer conn.Close()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: ptrStr(p.GRPC.Service)})
		if err != nil {
			return false, "", err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false, fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus()), nil
		}
		return true, "", nil
	}
	return false, "", fmt.Errorf("%w: no handler", ErrProbe)
}

func ptrStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (r CRIRunner) http(ctx context.Context, g *v1.HTTPGetAction, t Target, timeout time.Duration) (bool, string, error) {
	port, err := resolvePort(g.Port, t.Container)
	if err != nil {
		return false, "", err
	}
	host := g.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path))
	if err != nil {
		return false, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, "", err
	}
	req.Header.Set("User-Agent", r.UserAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Timeout: timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true, Proxy: nil},
		// Upstream follows redirects on the same host only; another host counts as success.
		CheckRedirect: func(nr *http.Request, via []*http.Request) error {
			if nr.URL.Hostname() != u.Hostname() || len(via) >= 10 {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	resp, err := client.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, string(b), nil
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode), nil
}

// resolvePort turns a number or a named container port into a number.
func resolvePort(p intstr.IntOrString, c *v1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("%w: invalid port %d", ErrProbe, p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("%w: no port named %q in container %s", ErrProbe, p.StrVal, c.Name)
}
