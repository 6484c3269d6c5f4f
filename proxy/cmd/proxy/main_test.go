package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nodesuite/nodesuite/shared/daemontest"
)

func TestBinaryHealthzAndSIGTERM(t *testing.T) {
	bin := daemontest.Build(t, ".")
	addr := daemontest.FreePort(t)
	daemontest.StartHealthzSIGTERM(t, bin, []string{"--healthz-bind-address=" + addr}, addr, 20*time.Second)
}

func TestBinaryFlags(t *testing.T) {
	bin := daemontest.Build(t, ".")
	if code, out, _ := daemontest.RunArgs(t, bin, "--version"); code != 0 || !strings.HasPrefix(out, "proxy ") {
		t.Fatalf("--version: %d %q", code, out)
	}
	if code, out, _ := daemontest.RunArgs(t, bin, "--help"); code != 0 || !strings.Contains(out, "--healthz-bind-address") {
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
}
