package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"sigs.k8s.io/knftables"

	"github.com/nodesuite/nodesuite/e2e/harness/hostos"
)

// CgroupFS is where the v1 hierarchies are mounted.
const CgroupFS = "/sys/fs/cgroup"

// RealHost is HostOS on this machine.
type RealHost struct{}

var _ HostOS = RealHost{}

// Observe scans /proc, mountinfo, links, nftables and cgroups.
func (RealHost) Observe(l Layout) (Observed, error) {
	var obs Observed
	var err error
	if obs.Procs, err = listProcs(); err != nil {
		return obs, err
	}
	byPID := map[int]Proc{}
	for _, p := range obs.Procs {
		byPID[p.PID] = p
	}
	for pid := os.Getpid(); pid > 1; {
		obs.Self = append(obs.Self, pid)
		p, ok := byPID[pid]
		if !ok {
			break
		}
		pid = p.PPID
	}
	obs.Self = append(obs.Self, 1)
	if obs.Mounts, err = hostos.MountPoints(); err != nil {
		return obs, err
	}
	links, err := netlink.LinkList()
	if err != nil {
		return obs, fmt.Errorf("list links: %w", err)
	}
	names := map[int]string{}
	for _, ln := range links {
		names[ln.Attrs().Index] = ln.Attrs().Name
	}
	for _, ln := range links {
		a := ln.Attrs()
		obs.Links = append(obs.Links, Link{Name: a.Name, Master: names[a.MasterIndex]})
	}
	if nft, err := NewGuardNft(); err == nil {
		if _, err := nft.List(context.Background(), "chains"); err == nil {
			obs.GuardTable = true
		}
	}
	hier, _ := os.ReadDir(CgroupFS)
	for _, h := range hier {
		root := filepath.Join(CgroupFS, h.Name(), CgroupParent)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				obs.CgroupDirs = append(obs.CgroupDirs, p)
			}
			return nil
		})
	}
	for _, p := range removablePaths(l) {
		if _, err := os.Lstat(p); err == nil {
			obs.Paths = append(obs.Paths, p)
		}
	}
	return obs, nil
}

// removablePaths is everything up creates except the logs, which stay for
// whoever has to find out why something failed.
func removablePaths(l Layout) []string {
	var out []string
	entries, _ := os.ReadDir(l.Dir)
	for _, e := range entries {
		if e.Name() != "logs" {
			out = append(out, filepath.Join(l.Dir, e.Name()))
		}
	}
	return append(out, l.RunDir)
}

func listProcs() ([]Proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // exited meanwhile
		}
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 20 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ticks, _ := strconv.ParseUint(f[19], 10, 64)
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		p := Proc{PID: pid, PPID: ppid, StartTicks: ticks, Cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))}
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		for _, line := range strings.Split(string(cg), "\n") {
			if parts := strings.SplitN(line, ":", 3); len(parts) == 3 {
				p.Cgroups = append(p.Cgroups, parts[2])
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Alive reports whether pid still runs and is the same process.
func (RealHost) Alive(pid int, ticks uint64) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 20 || f[0] == "X" {
		return false
	}
	if f[0] == "Z" {
		// The leader turns zombie before its other threads have finished
		// exiting (and closed its sockets); PID 1 here may never reap it.
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if len(tasks) <= 1 {
			return false
		}
	}
	got, _ := strconv.ParseUint(f[19], 10, 64)
	return ticks == 0 || got == ticks
}

func (RealHost) Signal(pid, sig int) error { return syscall.Kill(pid, syscall.Signal(sig)) }

func (RealHost) Run(ctx context.Context, args []string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", args[0], err, Tail2(out))
	}
	return nil
}

// Tail2 keeps the end of a command's output for an error message.
func Tail2(b []byte) string {
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return strings.TrimSpace(string(b))
}

func (RealHost) Unmount(path string) error {
	err := syscall.Unmount(path, syscall.MNT_DETACH)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
		return nil // not (or no longer) a mount point
	}
	return err
}

func (RealHost) DeleteLink(name string) error { return hostos.DeleteLink(name) }

func (RealHost) Rmdir(path string) error {
	if err := syscall.Rmdir(path); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
}

func (RealHost) WriteFile(path, value string) error { return os.WriteFile(path, []byte(value), 0o644) }

// RemoveAll refuses to descend into a path that still has a mount below it:
// rm -rf through a leftover bind mount would delete somebody else's files.
func (RealHost) RemoveAll(path string) error {
	mounts, err := hostos.MountPoints()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if under(m, path) {
			return fmt.Errorf("still mounted: %s", m)
		}
	}
	return os.RemoveAll(path)
}

func (RealHost) DeleteNftTable(name string) error {
	nft, err := knftables.New(knftables.InetFamily, name)
	if err != nil {
		return err
	}
	tx := nft.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := nft.Run(context.Background(), tx); err != nil && !knftables.IsNotFound(err) {
		return err
	}
	return nil
}
