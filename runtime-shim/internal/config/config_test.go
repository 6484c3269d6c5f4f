package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func resolve(t *testing.T, file string, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f := AddFlags(fs)
	if file != "" {
		p := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config="+p)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.Resolve()
}

func TestResolve(t *testing.T) {
	want := Default()
	want.Socket = "/tmp/x.sock"
	want.CNIBinDirs = []string{"/a", "/b"}
	want.SandboxImage = "pause:file"
	want.CgroupDriver = "systemd"
	got, err := resolve(t, "sandbox_image = \"pause:file\"\nsocket = \"/file.sock\"\ncgroup_driver = \"systemd\"\n",
		"--socket=/tmp/x.sock", "--cni-bin-dir=/a, /b")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		args       []string
		wantIn     string
	}{
		{"unknown field", "socket = \"/s\"\nenable_selinux = true\n", nil, "enable_selinux"},
		{"bad driver", "", []string{"--cgroup-driver=weird"}, "cgroup-driver"},
		{"empty socket", "", []string{"--socket="}, "socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resolve(t, tc.file, tc.args...)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Fatalf("got %v, want ErrInvalid naming %q", err, tc.wantIn)
			}
		})
	}
}

// The shipped example config must stay loadable.
func TestDeployExample(t *testing.T) {
	b, err := os.ReadFile("../../../deploy/runtime-shim/config.toml")
	if err != nil {
		t.Skipf("example config not in this tree: %v", err)
	}
	c, err := Parse(b, Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
