package framework

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// Protocol selects how exec streams travel from the client to the API server.
type Protocol string

const (
	WebSocket Protocol = "websocket"
	SPDY      Protocol = "spdy"
)

// ExecResult is what a command run in a container produced.
type ExecResult struct {
	Stdout, Stderr string
	// ExitCode is the command's exit status; it is only meaningful when Exec returned no error.
	ExitCode int
}

// Exec runs cmd in the container through the API server's exec subresource,
// which proxies to the kubelet's streaming server. A non-zero exit status is
// reported in ExitCode, not as an error.
func (f *Framework) Exec(pod, container string, proto Protocol, stdin string, cmd ...string) (ExecResult, error) {
	opts := &v1.PodExecOptions{
		Container: container,
		Command:   cmd,
		Stdin:     stdin != "",
		Stdout:    true,
		Stderr:    true,
	}
	req := f.Client.CoreV1().RESTClient().Post().Namespace(f.Namespace).Resource("pods").Name(pod).SubResource("exec").VersionedParams(opts, scheme.ParameterCodec)
	var (
		ex  remotecommand.Executor
		err error
	)
	switch proto {
	case WebSocket:
		ex, err = remotecommand.NewWebSocketExecutor(f.Config, "GET", req.URL().String())
	case SPDY:
		ex, err = remotecommand.NewSPDYExecutor(f.Config, "POST", req.URL())
	default:
		return ExecResult{}, fmt.Errorf("unknown exec protocol %q", proto)
	}
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec %v in %s/%s over %s: %w", cmd, pod, container, proto, err)
	}
	var stdout, stderr bytes.Buffer
	so := remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}
	if stdin != "" {
		so.Stdin = strings.NewReader(stdin)
	}
	err = ex.StreamWithContext(f.Ctx, so)
	res := ExecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitStatus()
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("exec %v in %s/%s over %s: %w (stderr %q)", cmd, pod, container, proto, err, res.Stderr)
	}
	return res, nil
}
