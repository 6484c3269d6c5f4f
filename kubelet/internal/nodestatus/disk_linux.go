package nodestatus

import "golang.org/x/sys/unix"

func diskBytes(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if err := unix.Statfs("/", &st); err != nil {
			return 0
		}
	}
	return int64(st.Blocks) * st.Bsize
}
