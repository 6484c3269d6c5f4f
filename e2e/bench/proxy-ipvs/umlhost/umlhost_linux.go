// Package umlhost is the host side of the proxy's user-mode-linux runs: a
// tap device joining the UML guest to this host on a private /30, and a real
// control plane (etcd + kube-apiserver) the guest reaches over it. The guest
// gets no default route (proxy/test/uml/run.sh), so the tap's /30 is all it
// can reach; forwarding is off on the tap, so the host never routes its
// packets on.
package umlhost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodesuite/nodesuite/e2e/harness/controlplane"
)

// Env is a running host side.
type Env struct {
	// Tap is the host's tap device; HostIP its address; GuestCIDR the
	// address the guest gives its eth0 (ADDR/30).
	Tap       string
	HostIP    net.IP
	GuestCIDR string
	CP        *controlplane.ControlPlane
	// GuestKubeconfig is an admin kubeconfig whose server is the API
	// server's address on the tap.
	GuestKubeconfig string
	Dir             string
	log             *zap.Logger
}

// ErrNoTap is returned when every candidate tap name is taken.
var ErrNoTap = errors.New("no free nsipvsN tap name")

// Start makes the tap (the first free nsipvsN, N < 32, with
// 192.168.250.4N+1/30) and the control plane under dir.
func Start(ctx context.Context, dir string, log *zap.Logger) (_ *Env, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, log: log}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	for n := 0; n < 32 && e.Tap == ""; n++ {
		name := fmt.Sprintf("nsipvs%d", n)
		// Creation fails when the name exists: another run holds it.
		if out, err := exec.Command("ip", "tuntap", "add", "dev", name, "mode", "tap").CombinedOutput(); err != nil {
			log.Debug("tap taken", zap.String("tap", name), zap.ByteString("ip", out))
			continue
		}
		e.Tap = name
		e.HostIP = net.IPv4(192, 168, 250, byte(4*n+1))
		e.GuestCIDR = fmt.Sprintf("192.168.250.%d/30", 4*n+2)
	}
	if e.Tap == "" {
		return nil, ErrNoTap
	}
	for _, c := range [][]string{
		{"sysctl", "-qw", "net.ipv4.conf." + e.Tap + ".forwarding=0"},
		{"sysctl", "-qw", "net.ipv6.conf." + e.Tap + ".disable_ipv6=1"},
		{"ip", "addr", "add", e.HostIP.String() + "/30", "dev", e.Tap},
		{"ip", "link", "set", e.Tap, "up"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(c, " "), err, out)
		}
	}
	e.CP, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(dir, "cp"), Log: log.Named("controlplane"),
		ExtraIPs: []net.IP{e.HostIP}})
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.LoadFromFile(e.CP.AdminKubeconfig)
	if err != nil {
		return nil, err
	}
	for _, c := range cfg.Clusters {
		c.Server = e.CP.ServerFor(e.HostIP)
	}
	e.GuestKubeconfig = filepath.Join(dir, "guest.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, e.GuestKubeconfig); err != nil {
		return nil, err
	}
	log.Info("host side ready", zap.String("tap", e.Tap), zap.Stringer("hostIP", e.HostIP),
		zap.String("guest", e.GuestCIDR), zap.String("server", e.CP.ServerFor(e.HostIP)))
	return e, nil
}

// Command is run.sh running args in a UML guest joined to the tap, with
// NODESUITE_UML_KUBECONFIG set for it.
func (e *Env) Command(ctx context.Context, runSh, mem string, args ...string) *exec.Cmd {
	a := []string{"-m", mem, "-n", e.Tap + "," + e.GuestCIDR, "env", "NODESUITE_UML_KUBECONFIG=" + e.GuestKubeconfig}
	cmd := exec.CommandContext(ctx, runSh, append(a, args...)...)
	// run.sh's own trap ends the guest; SIGTERM lets it run.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	return cmd
}

// Close stops the control plane and deletes the tap. Safe to call twice.
func (e *Env) Close() {
	if e.CP != nil {
		e.CP.Stop()
		e.CP = nil
	}
	if e.Tap != "" {
		if out, err := exec.Command("ip", "link", "del", e.Tap).CombinedOutput(); err != nil {
			e.log.Warn("delete tap", zap.String("tap", e.Tap), zap.Error(err), zap.ByteString("ip", out))
		}
		e.Tap = ""
	}
}
