package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// netNS is a network namespace of the bench's own with a veth pair to the
// host: hostIP on the host side, nodeIP (the proxy's node address) inside.
// Nothing is routed beyond the /30, so no packet of the proxy leaves it.
type netNS struct {
	name     string
	hostLink string
	hostIP   net.IP
	nodeIP   net.IP
}

func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetNS creates the namespace and its veth pair. subnet is the /30's
// first address (host gets +1, the namespace +2).
func newNetNS(ctx context.Context, name, hostLink string, subnet net.IP) (*netNS, error) {
	s := subnet.To4()
	n := &netNS{name: name, hostLink: hostLink,
		hostIP: net.IPv4(s[0], s[1], s[2], s[3]+1).To4(),
		nodeIP: net.IPv4(s[0], s[1], s[2], s[3]+2).To4()}
	if err := ipCmd(ctx, "netns", "add", name); err != nil {
		return nil, err
	}
	steps := [][]string{
		{"link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"addr", "add", n.hostIP.String() + "/30", "dev", hostLink},
		{"link", "set", hostLink, "up"},
		{"-n", name, "addr", "add", n.nodeIP.String() + "/30", "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
		{"-n", name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s...); err != nil {
			n.delete()
			return nil, err
		}
	}
	return n, nil
}

// delete removes the namespace; its veth end goes with it, and so does the
// host's. The host end is deleted too in case the namespace was never
// made.
func (n *netNS) delete() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_ = ipCmd(ctx, "netns", "del", n.name)
	_ = exec.CommandContext(ctx, "ip", "link", "del", n.hostLink).Run()
}

// command runs argv inside the namespace. `ip netns exec` execs argv in
// place, so the process's PID is argv's own (for /proc/PID/status).
func (n *netNS) command(argv ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name}, argv...)...)
	// Dies with the bench, even on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

func (n *netNS) nft(ctx context.Context, args ...string) (string, error) {
	cmd := n.command(append([]string{"nft"}, args...)...)
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("nft %s in %s: %w: %s", strings.Join(args, " "), n.name, err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), ctx.Err()
}

// commitEvent is one nftables commit in the namespace (a NEWGEN message),
// or overrun: the socket dropped messages, so a commit may have been
// missed.
type commitEvent struct {
	at      time.Time
	overrun bool
}

// addrEvent says a rule or set element carrying addr was committed.
type addrEvent struct {
	at   time.Time
	addr netip.Addr
}

// kernelWatch is what the namespace's nftables notifications show.
type kernelWatch struct {
	commits <-chan commitEvent
	addrs   <-chan addrEvent
}

// watchKernel reports every nftables commit in the namespace as it
// happens, and every IPv4 address inside prefix (a /16) that a new rule or
// set element carries. It listens to the kernel's nftables multicast
// group itself: `nft monitor` falls behind and silently loses events on a
// transaction of 100,000 rules, and takes minutes to start (it lists the
// whole ruleset first) once they are there. Only two things are decoded:
// the end of a transaction (NEWGEN), and addresses, found as the 4-byte
// aligned values of the prefix in NEWRULE/NEWSETELEM payloads (a DNAT
// target in a rule, or an element of kube-proxy's numgen map).
// Notifications are sent when the transaction commits, so their arrival
// time is the time the kernel applied the change. Sends never block: a
// reader that stops reading loses events, not the watcher.
func (n *netNS) watchKernel(ctx context.Context, prefix netip.Prefix) (*kernelWatch, error) {
	commits := make(chan commitEvent, 1<<12)
	addrs := make(chan addrEvent, 1<<16)
	p := prefix.Addr().As4()
	ready := make(chan error, 1)
	go func() {
		defer close(commits)
		defer close(addrs)
		fd, err := nftSocketIn("/var/run/netns/" + n.name)
		ready <- err
		if err != nil {
			return
		}
		defer unix.Close(fd)
		buf := make([]byte, 1<<20)
		for ctx.Err() == nil {
			nr, _, err := unix.Recvfrom(fd, buf, 0)
			now := time.Now()
			switch {
			case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.ENOBUFS):
				trySend(commits, commitEvent{at: now, overrun: true})
				continue
			case err != nil:
				return
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				switch m.Header.Type {
				case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN:
					trySend(commits, commitEvent{at: now})
				case unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE, unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM:
					for _, a := range addrsIn(m.Data, p[0], p[1]) {
						trySend(addrs, addrEvent{at: now, addr: a})
					}
				}
			}
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return &kernelWatch{commits: commits, addrs: addrs}, nil
}

func trySend[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// nftSocketIn opens, inside the namespace, a netlink socket subscribed to
// nftables events, with a large buffer and a receive timeout so the reader
// notices cancellation. The socket stays in the namespace; the thread that
// made it goes back to its own. A thread that cannot is left locked, so the
// runtime ends it: no other goroutine may run in the wrong namespace. (A
// thread must not end otherwise: children started with Pdeathsig from it,
// as the control plane's are, would be killed with it.)
func nftSocketIn(nsPath string) (fd int, err error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer orig.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return -1, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return -1, fmt.Errorf("setns %s: %w", nsPath, err)
	}
	defer func() {
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return nftSocket()
}

func nftSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	tv := unix.Timeval{Usec: 200000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1 << (unix.NFNLGRP_NFTABLES - 1)}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink bind: %w", err)
	}
	return fd, nil
}
