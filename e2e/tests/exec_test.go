package tests

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"

	"github.com/nodesuite/nodesuite/e2e/framework"
)

// TestExec runs commands in a container through the API server's exec
// subresource over both streaming protocols client-go speaks.
func TestExec(t *testing.T) {
	t.Parallel()
	f := framework.New(t)
	pod := framework.BusyboxPod("exec", v1.RestartPolicyAlways, "echo from-container > /tmp/created; exec sleep 3600")
	pod.Spec.Containers[0].Env = []v1.EnvVar{{Name: "MARKER", Value: "marker-value"}}
	f.CreatePod(pod)
	f.WaitForPodRunningReady("exec")

	for _, proto := range []framework.Protocol{framework.WebSocket, framework.SPDY} {
		t.Run(string(proto), func(t *testing.T) {
			t.Parallel()
			f := f.Sub(t)
			tests := []struct {
				name  string
				stdin string
				cmd   []string
				want  framework.ExecResult
			}{
				{
					name: "stdout, stderr and exit code",
					cmd:  []string{"sh", "-c", "echo out; echo err >&2; exit 7"},
					want: framework.ExecResult{Stdout: "out\n", Stderr: "err\n", ExitCode: 7},
				},
				{
					name:  "stdin",
					stdin: "hello\nworld\n",
					cmd:   []string{"cat"},
					want:  framework.ExecResult{Stdout: "hello\nworld\n"},
				},
				{
					name: "runs in the container's filesystem and environment",
					cmd:  []string{"sh", "-c", "cat /tmp/created; echo $MARKER"},
					want: framework.ExecResult{Stdout: "from-container\nmarker-value\n"},
				},
			}
			for _, tc := range tests {
				got, err := f.Exec("exec", "c", proto, tc.stdin, tc.cmd...)
				if err != nil {
					t.Errorf("%s: %v\n%s", tc.name, err, f.DescribePod("exec"))
					continue
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tc.name, diff)
				}
			}
		})
	}
}
