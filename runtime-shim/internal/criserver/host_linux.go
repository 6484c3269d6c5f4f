package criserver

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/pkg/netns"
	"golang.org/x/sys/unix"
)

// OSHost is the real Host: netns via containerd's netns package.
type OSHost struct{}

// NewNetNS creates and bind-mounts a new network namespace under dir.
func (OSHost) NewNetNS(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	ns, err := netns.NewNetNS(dir)
	if err != nil {
		return "", err
	}
	return ns.GetPath(), nil
}

// RemoveNetNS unmounts and removes the namespace; a missing one is fine.
func (OSHost) RemoveNetNS(path string) error {
	if path == "" {
		return nil
	}
	if err := netns.LoadNetNS(path).Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// OOMScoreAdjMin reads our own oom_score_adj: without CAP_SYS_RESOURCE no
// child may go below it.
func (OSHost) OOMScoreAdjMin() (int64, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse oom_score_adj: %w", err)
	}
	return v, nil
}

// shmSize is a Pod's /dev/shm size, containerd's CRI default (64 MiB).
const shmSize = 64 << 20

// MountShm mounts the tmpfs that a Pod's containers share as /dev/shm, with
// containerd's CRI flags and size.
func (OSHost) MountShm(path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("mode=1777,size=%d", shmSize)); err != nil {
		return fmt.Errorf("mount shm at %s: %w", path, err)
	}
	return nil
}

// UnmountShm detaches the Pod's /dev/shm; not mounted or gone is fine.
func (OSHost) UnmountShm(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount shm at %s: %w", path, err)
}
