package volume

import (
	"errors"
	"fmt"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// OSMounter is the host's mount table.
type OSMounter struct{}

// MountTmpfs mounts a tmpfs at path unless path is already a mount point.
func (OSMounter) MountTmpfs(path string, size int64) error {
	if mounted, err := mountinfo.Mounted(path); err != nil || mounted {
		return err
	}
	opts := "mode=0777"
	if size > 0 {
		opts += fmt.Sprintf(",size=%d", size)
	}
	if err := unix.Mount("tmpfs", path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", path, err)
	}
	return nil
}

// UnmountUnder detaches every mount at or below dir, deepest first.
func (OSMounter) UnmountUnder(dir string) error {
	mps, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return err
	}
	var under []string
	for _, m := range mps {
		under = append(under, m.Mountpoint)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(under)))
	for _, mp := range under {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}
