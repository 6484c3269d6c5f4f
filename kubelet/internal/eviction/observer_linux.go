package eviction

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nodesuite/nodesuite/kubelet/internal/stats"
)

// HostObserver reads this machine: memory from /proc/meminfo, the node fs
// at the kubelet's root dir, the image fs at ImageFsPath (the runtime's,
// or the node fs when empty), PIDs from pid_max and the task count.
type HostObserver struct {
	RootDir string
	// ImageFsPath returns the runtime's image filesystem mount point;
	// nil or "" means the node fs holds the images.
	ImageFsPath func(ctx context.Context) string
}

// Observe reads every signal it can; the error joins the ones it could not.
func (h HostObserver) Observe(ctx context.Context) (map[string]Observation, error) {
	out := map[string]Observation{}
	var errs []error
	if total, avail, err := memInfo(); err == nil {
		// Upstream's memory.available is capacity less the working set;
		// MemAvailable is the kernel's estimate of the same.
		out[MemoryAvailable] = Observation{Available: avail, Capacity: total}
	} else {
		errs = append(errs, err)
	}
	fs := func(path, avail, inodes string) {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			errs = append(errs, fmt.Errorf("statfs %s: %w", path, err))
			return
		}
		bs := int64(st.Bsize)
		out[avail] = Observation{Available: int64(st.Bavail) * bs, Capacity: int64(st.Blocks) * bs}
		out[inodes] = Observation{Available: int64(st.Ffree), Capacity: int64(st.Files)}
	}
	fs(h.RootDir, NodeFsAvailable, NodeFsInodesFree)
	img := h.RootDir
	if h.ImageFsPath != nil {
		if p := h.ImageFsPath(ctx); p != "" {
			img = p
		}
	}
	fs(img, ImageFsAvailable, ImageFsInodesFree)
	if max, err := readInt("/proc/sys/kernel/pid_max"); err == nil {
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err == nil {
			out[PIDAvailable] = Observation{Available: max - int64(si.Procs), Capacity: max}
		}
	}
	return out, errors.Join(errs...)
}

func memInfo() (total, avail int64, err error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	m, err := stats.ParseMemInfo(f)
	if err != nil {
		return 0, 0, err
	}
	return int64(m["MemTotal"]), int64(m["MemAvailable"]), nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
