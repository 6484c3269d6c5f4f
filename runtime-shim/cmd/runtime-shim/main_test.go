package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodesuite/nodesuite/shared/daemontest"
)

func TestBinaryHealthzAndSIGTERM(t *testing.T) {
	bin := daemontest.Build(t, ".")
	addr := daemontest.FreePort(t)
	dir := t.TempDir()
	// No containerd at this address: the shim must still serve /healthz and
	// exit cleanly on SIGTERM while waiting for it.
	daemontest.StartHealthzSIGTERM(t, bin, []string{"--ops-bind-address=" + addr,
		"--socket=" + filepath.Join(dir, "cri.sock"), "--containerd-address=" + filepath.Join(dir, "none.sock"),
		"--root-dir=" + filepath.Join(dir, "root"), "--state-dir=" + filepath.Join(dir, "state")}, addr, 20*time.Second)
}

func TestBinaryFlags(t *testing.T) {
	bin := daemontest.Build(t, ".")
	if code, out, _ := daemontest.RunArgs(t, bin, "--version"); code != 0 || !strings.HasPrefix(out, "runtime-shim ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	if code, out, _ := daemontest.RunArgs(t, bin, "--help"); code != 0 || !strings.Contains(out, "--ops-bind-address") {
		t.Fatalf("--help: %d %q", code, out)
	}
	code, _, errOut := daemontest.RunArgs(t, bin, "--no-such-flag")
	if code == 0 || errOut != "runtime-shim: unknown flag: --no-such-flag\n" {
		t.Fatalf("unknown flag: %d %q", code, errOut)
	}
	cfg := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(cfg, []byte("enable_selinux = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--config="+cfg)
	if code != 2 || !strings.Contains(errOut, "enable_selinux") {
		t.Fatalf("unsupported config field: %d %q", code, errOut)
	}
	code, _, errOut = daemontest.RunArgs(t, bin, "--log-format=xml")
	if code == 0 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "--log-format") {
		t.Fatalf("invalid value: %d %q", code, errOut)
	}
}
