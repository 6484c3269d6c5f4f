package podworker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// runHook runs a lifecycle handler (exec, httpGet or sleep) within timeout
// seconds; the message is what upstream puts in the FailedPostStartHook event.
func (s *Syncer) runHook(ctx context.Context, pod *v1.Pod, containerID string, podIPs []string, h *v1.LifecycleHandler, timeout int64) (string, error) {
	if timeout <= 0 {
		timeout = 1
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
	defer cancel()
	switch {
	case h.Exec != nil:
		stdout, stderr, err := s.RT.ExecSync(ctx, containerID, h.Exec.Command, time.Duration(timeout)*time.Second)
		out := string(stdout) + string(stderr)
		if err != nil {
			return fmt.Sprintf("Exec lifecycle hook (%v) for Container in Pod %s failed - error: %v, message: %q", h.Exec.Command, formatPod(pod), err, out), err
		}
		return "", nil
	case h.HTTPGet != nil:
		return s.httpHook(ctx, pod, podIPs, h.HTTPGet)
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
		}
		return "", nil
	case h.TCPSocket != nil:
		return "", nil // deprecated upstream and treated as a no-op there too
	}
	return "", errors.New("lifecycle handler with no action")
}

func (s *Syncer) httpHook(ctx context.Context, pod *v1.Pod, podIPs []string, g *v1.HTTPGetAction) (string, error) {
	host := g.Host
	if host == "" && len(podIPs) > 0 {
		host = podIPs[0]
	}
	port, err := resolvePort(g.Port, pod)
	if err != nil {
		return err.Error(), err
	}
	scheme := "http"
	if g.Scheme == v1.URISchemeHTTPS {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port)), Path: g.Path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err.Error(), err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Sprintf("HTTP lifecycle hook (%s) for Container in Pod %s failed - error: %v", g.Path, formatPod(pod), err), err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		err := fmt.Errorf("HTTP lifecycle hook: status %d", resp.StatusCode)
		return err.Error(), err
	}
	return "", nil
}

func resolvePort(p intstr.IntOrString, pod *v1.Pod) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q", p.StrVal)
}
