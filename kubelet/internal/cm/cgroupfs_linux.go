package cm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupFS is the seam between the manager and the kernel's cgroup files:
// osFS on a node, an emulation of cgroupfs (interface files appearing on
// mkdir, EBUSY from rmdir) under a temp dir in tests.
type cgroupFS interface {
	// Mkdir creates one directory; an existing one is an os.ErrExist error.
	Mkdir(dir string) error
	Rmdir(dir string) error
	ReadFile(file string) (string, error)
	// WriteFile replaces an existing file's value; it never creates one,
	// since cgroupfs has no files but the kernel's.
	WriteFile(file, data string) error
	ReadDir(dir string) ([]os.DirEntry, error)
}

type osFS struct{}

func (osFS) Mkdir(dir string) error { return os.Mkdir(dir, 0o755) }

func (osFS) Rmdir(dir string) error {
	for {
		err := unix.Rmdir(dir)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		return nil
	}
}

func (osFS) ReadFile(file string) (string, error) {
	b, err := os.ReadFile(file)
	return string(b), err
}

func (osFS) WriteFile(file, data string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The value is what the kernel refused: worth having in the message.
		return fmt.Errorf("write %q: %w", data, err)
	}
	return nil
}

func (osFS) ReadDir(dir string) ([]os.DirEntry, error) { return os.ReadDir(dir) }

// hierarchy is one mounted cgroup tree: on v1 one per directory of the mount
// root (cpu, memory, "cpu,cpuacct", systemd, the hybrid "unified", ...); on v2
// the root itself.
type hierarchy struct {
	dir         string
	controllers map[string]bool
}

// layout is how the cgroup hierarchies are mounted under the mount root.
type layout struct {
	v2    bool
	hiers []hierarchy
	// rootControllers (v2) is the root's cgroup.controllers in the kernel's
	// order: what every level above a cgroup gets enabled, as runc does.
	rootControllers []string
}

// detectLayout tells v2 by the root's cgroup.controllers; on v1 every
// directory under the root is a hierarchy, named by its controllers as
// mounted (symlinks such as cpu -> cpu,cpuacct are skipped, so each tree
// is visited once).
func detectLayout(fs cgroupFS, root string) (*layout, error) {
	if s, err := fs.ReadFile(filepath.Join(root, "cgroup.controllers")); err == nil {
		return &layout{
			v2:              true,
			hiers:           []hierarchy{{dir: root, controllers: setOf(strings.Fields(s))}},
			rootControllers: strings.Fields(s),
		}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cgroup layout: %w", err)
	}
	entries, err := fs.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("cgroup layout: %w", err)
	}
	l := &layout{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		l.hiers = append(l.hiers, hierarchy{dir: filepath.Join(root, e.Name()), controllers: setOf(strings.Split(e.Name(), ","))})
	}
	if len(l.hiers) == 0 {
		return nil, fmt.Errorf("cgroup layout: no cgroup hierarchies under %s", root)
	}
	return l, nil
}

func setOf(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// sameValue tells whether a file reading have already holds want, allowing
// for the kernel rounding byte limits down to whole pages (memory) or huge
// pages (hugetlb), so an unchanged limit is not rewritten.
func sameValue(file, have, want string) bool {
	have = strings.TrimSpace(have)
	if have == want {
		return true
	}
	unit := int64(os.Getpagesize())
	switch {
	case strings.HasPrefix(file, "memory."):
	case strings.HasPrefix(file, "hugetlb."):
		if size, ok := hugetlbFileSize(file); ok {
			unit = size
		}
	default:
		return false
	}
	w, err := strconv.ParseInt(want, 10, 64)
	if err != nil || w < 0 {
		return false
	}
	h, err := strconv.ParseInt(have, 10, 64)
	return err == nil && h == w/unit*unit
}

// hugetlbFileSize is the page size of a hugetlb.<size>.* file.
func hugetlbFileSize(file string) (int64, bool) {
	parts := strings.Split(file, ".")
	if len(parts) < 3 || parts[0] != "hugetlb" {
		return 0, false
	}
	return parsePageSize(parts[1])
}

// parsePageSize reads the kernel's page size names: 64KB, 2MB, 1GB.
func parsePageSize(s string) (int64, bool) {
	for i, unit := range []string{"KB", "MB", "GB", "TB"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil || v <= 0 {
				return 0, false
			}
			return v << (10 * (i + 1)), true
		}
	}
	return 0, false
}

// hugetlbSizes lists the page sizes the cgroup at dir has limits for, by
// the interface files the kernel made (v1 limit_in_bytes, v2 max), and
// whether it has the reservation limits too.
func hugetlbSizes(fs cgroupFS, dir string, v2 bool) (sizes []string, rsvd bool, err error) {
	suffix := ".limit_in_bytes"
	if v2 {
		suffix = ".max"
	}
	entries, err := fs.ReadDir(dir)
	if err != nil {
		return nil, false, err
	}
	for _, e := range entries {
		name := e.Name()
		mid, ok := strings.CutPrefix(name, "hugetlb.")
		if !ok {
			continue
		}
		mid, ok = strings.CutSuffix(mid, suffix)
		if !ok {
			continue
		}
		if size, isRsvd := strings.CutSuffix(mid, ".rsvd"); isRsvd {
			if _, ok := parsePageSize(size); ok {
				rsvd = true
			}
			continue
		}
		if _, ok := parsePageSize(mid); ok {
			sizes = append(sizes, mid)
		}
	}
	return sizes, rsvd, nil
}
