package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodesuite/nodesuite/shared/daemontest"
)

// TestBinaryHealthzAndSIGTERM runs the kubelet standalone (no kubeconfig)
// with no runtime up: it serves /healthz, keeps retrying the runtime, and
// stops cleanly on SIGTERM.
func TestBinaryHealthzAndSIGTERM(t *testing.T) {
	bin := daemontest.Build(t, ".")
	addr := daemontest.FreePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\npodLogsDir: "+dir+"/logs\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	daemontest.StartHealthzSIGTERM(t, bin, []string{"--healthz-bind-address=" + addr, "--config=" + cfg,
		"--root-dir=" + dir + "/root", "--container-runtime-endpoint=unix://" + dir + "/no-runtime.sock"}, addr, 20*time.Second)
}

func TestBinaryFlags(t *testing.T) {
	bin := daemontest.Build(t, ".")
	if code, out, _ := daemontest.RunArgs(t, bin, "--version"); code != 0 || !strings.HasPrefix(out, "kubelet ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	if code, out, _ := daemontest.RunArgs(t, bin, "--help"); code != 0 || !strings.Contains(out, "--healthz-bind-address") {
		t.Fatalf("--help: %d %q", code, out)
	}
	code, _, errOut := daemontest.RunArgs(t, bin, "--no-such-flag")
	if code == 0 || errOut != "kubelet: unknown flag: --no-such-flag\n" {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicy: static\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--config="+bad)
	if code != 2 || !strings.Contains(errOut, "cpuManagerPolicy") {
		t.Fatalf("unsupported field: %d %q", code, errOut)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--log-format=xml")
	if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--log-format") {
		t.Fatalf("invalid value: %d %q", code, errOut)
	}
}
