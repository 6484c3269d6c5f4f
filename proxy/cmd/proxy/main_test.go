package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodesuite/nodesuite/shared/daemontest"
)

// kubeconfig points at a closed loopback port: the proxy runs, its informers
// wait for an API server that never answers, and it must still serve its
// health endpoints and stop cleanly.
func kubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	server := "http://" + daemontest.FreePort(t)
	data := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: " + server + "}\n" +
		"contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {}\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBinaryHealthzAndSIGTERM(t *testing.T) {
	bin := daemontest.Build(t, ".")
	metrics, healthz := daemontest.FreePort(t), daemontest.FreePort(t)
	// nftables mode builds its plane without touching the kernel before the
	// first sync, which never comes here: no root needed.
	daemontest.StartHealthzSIGTERM(t, bin, []string{"--kubeconfig=" + kubeconfig(t), "--proxy-mode=nftables",
		"--metrics-bind-address=" + metrics, "--healthz-bind-address=" + healthz, "--hostname-override=n1"}, metrics, 20*time.Second)
}

func TestBinaryFlags(t *testing.T) {
	bin := daemontest.Build(t, ".")
	if code, out, _ := daemontest.RunArgs(t, bin, "--version"); code != 0 || !strings.HasPrefix(out, "proxy ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	if code, out, _ := daemontest.RunArgs(t, bin, "--help"); code != 0 || !strings.Contains(out, "--healthz-bind-address") ||
		!strings.Contains(out, "--ipvs-scheduler") {
		t.Fatalf("--help: %d %q", code, out)
	}
	code, _, errOut := daemontest.RunArgs(t, bin, "--no-such-flag")
	if code == 0 || errOut != "proxy: unknown flag: --no-such-flag\n" {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--log-format=xml")
	if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--log-format") {
		t.Fatalf("invalid value: %d %q", code, errOut)
	}
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nwinkernel: {enableDSR: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--config="+cfg)
	if code != 2 || !strings.Contains(errOut, "winkernel.enableDSR") {
		t.Fatalf("unsupported config field: %d %q", code, errOut)
	}
}
