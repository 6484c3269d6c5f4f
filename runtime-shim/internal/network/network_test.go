package network

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestPortMappings(t *testing.T) {
	got := PortMappings([]*runtime.PortMapping{
		{ContainerPort: 80, HostPort: 8080},
		{ContainerPort: 53, HostPort: 5353, Protocol: runtime.Protocol_UDP, HostIp: "127.0.0.1"},
		{ContainerPort: 90}, // no host port: not mapped
	})
	want := []PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestReady(t *testing.T) {
	dir := t.TempDir()
	c := &CNI{ConfDir: dir}
	if err := c.Ready(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("empty dir: got %v, want ErrNotReady", err)
	}
	conf := `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge"}]}`
	if err := os.WriteFile(filepath.Join(dir, "10-t.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); err != nil {
		t.Fatalf("with config: %v", err)
	}
}
