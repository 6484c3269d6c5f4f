package volume

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File is one file of a projected payload.
type File struct {
	Data []byte
	Mode os.FileMode
	// GID, when >= 0, is the group the file is given (fsGroup).
	GID int
}

const dataDir = "..data"

// writeAtomic makes dir hold exactly payload (relative path -> file) the way
// upstream's AtomicWriter lays it out, so a running container sees either the
// old or the new set, never a mix: the files live in a timestamped directory,
// `..data` links to it and each top-level name links through `..data`. A
// payload equal to what is there already writes nothing. It returns whether
// anything changed. (Written here rather than imported: upstream's writer
// lives in k8s.io/kubernetes, which this module does not depend on.)
func writeAtomic(dir string, payload map[string]File) (bool, error) {
	for p := range payload {
		if err := validPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	if same(dir, payload) {
		return false, nil
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return false, err
	}
	for p, f := range payload {
		full := filepath.Join(ts, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return false, err
		}
		if err := os.Chmod(full, f.Mode); err != nil { // WriteFile's mode passes through the umask
			return false, err
		}
		if f.GID >= 0 {
			if err := os.Lchown(full, -1, f.GID); err != nil {
				return false, err
			}
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, dataDir))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataDir)); err != nil {
		return false, err
	}
	want := map[string]bool{}
	for p := range payload {
		want[strings.SplitN(p, "/", 2)[0]] = true
	}
	for top := range want {
		link := filepath.Join(dir, top)
		if t, err := os.Readlink(link); err == nil && t == filepath.Join(dataDir, top) {
			continue
		}
		if err := os.Symlink(filepath.Join(dataDir, top), link); err != nil {
			return false, fmt.Errorf("link %s: %w", top, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "..") {
			if n != dataDir && n != filepath.Base(ts) && (n == old || strings.HasPrefix(n, "..20")) {
				_ = os.RemoveAll(filepath.Join(dir, n))
			}
			continue
		}
		if !want[n] {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
	return true, nil
}

// same tells whether dir already holds exactly payload.
func same(dir string, payload map[string]File) bool {
	cur := filepath.Join(dir, dataDir)
	if _, err := os.Stat(cur); err != nil {
		return false
	}
	n := 0
	err := filepath.Walk(cur+"/", func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(cur, p)
		f, ok := payload[rel]
		if !ok || info.Mode().Perm() != f.Mode.Perm() {
			return os.ErrExist
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			return os.ErrExist
		}
		return nil
	})
	return err == nil && n == len(payload)
}

// ErrBadPath is a payload path that would leave the volume.
var ErrBadPath = fmt.Errorf("invalid volume file path")

func validPath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") || filepath.Clean(p) != p {
		return fmt.Errorf("%w: %q", ErrBadPath, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("%w: %q", ErrBadPath, p)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
