package stats

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// OSHost reads this machine.
type OSHost struct{}

// ProcStat opens /proc/stat.
func (OSHost) ProcStat() (io.ReadCloser, error) { return os.Open("/proc/stat") }

// MemInfo opens /proc/meminfo.
func (OSHost) MemInfo() (io.ReadCloser, error) { return os.Open("/proc/meminfo") }

// Statfs reports the filesystem holding path.
func (OSHost) Statfs(path string) (capacity, available, inodes, inodesFree uint64, err error) {
	var st unix.Statfs_t
	if err = unix.Statfs(path, &st); err != nil {
		return 0, 0, 0, 0, err
	}
	bs := uint64(st.Bsize)
	return st.Blocks * bs, st.Bavail * bs, st.Files, st.Ffree, nil
}

// BootTime is when the machine booted.
func (OSHost) BootTime() time.Time {
	var info unix.Sysinfo_t
	if err := unix.Sysinfo(&info); err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(info.Uptime) * time.Second).Truncate(time.Second)
}
