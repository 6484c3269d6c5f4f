package framework

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecide(t *testing.T) {
	down := errors.New("connection refused")
	tests := []struct {
		name     string
		explicit bool
		err      error
		want     Decision
	}{
		{"default kubeconfig answers", false, nil, Proceed},
		{"explicit kubeconfig answers", true, nil, Proceed},
		{"default kubeconfig absent or down", false, down, Skip},
		{"explicit kubeconfig down", true, down, Fail},
	}
	for _, tc := range tests {
		if got := Decide(tc.explicit, tc.err); got != tc.want {
			t.Errorf("%s: Decide = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestKubeconfigPath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Path     string
		Explicit bool
	}
	tests := []struct {
		env  string
		want result
	}{
		{"/tmp/a.kubeconfig", result{"/tmp/a.kubeconfig", true}},
		// The test runs in e2e/framework; the default sits beside the e2e module.
		{"", result{filepath.Join(filepath.Dir(wd), "..", "_output", "cluster", "admin.kubeconfig"), false}},
	}
	for _, tc := range tests {
		p, explicit := kubeconfigPath(tc.env)
		if diff := cmp.Diff(tc.want, result{p, explicit}); diff != "" {
			t.Errorf("kubeconfigPath(%q) (-want +got):\n%s", tc.env, diff)
		}
	}
}

func TestConnectUnreachable(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	// A port on loopback nothing listens on: the dial fails at once and no
	// packet leaves the host.
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(kc); !errors.Is(err, ErrUnreachable) {
		t.Errorf("connect to a closed port: err = %v, want ErrUnreachable", err)
	}
	if _, err := connect(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ErrUnreachable) {
		t.Errorf("connect with a missing kubeconfig: err = %v, want ErrUnreachable", err)
	}
}
