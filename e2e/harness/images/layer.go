package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Entry is one file system object in a layer. Paths are relative to / and
// use forward slashes.
type Entry struct {
	Path string
	// Type is tar.TypeDir, tar.TypeReg, tar.TypeLink (hard link to Link)
	// or tar.TypeSymlink (pointing at Link).
	Type byte
	Mode int64
	UID  int
	GID  int
	Data []byte
	Link string
}

// Layer is a set of entries; Tar writes them sorted by path, parents first,
// with a fixed time, so the same entries always give the same digest.
type Layer []Entry

// epoch is every entry's modification time: images are reproducible.
var epoch = time.Unix(0, 0).UTC()

// Tar renders the layer as an uncompressed tar stream.
func (l Layer) Tar() ([]byte, error) {
	entries := append(Layer(nil), l...)
	// Add missing parent directories, as a tar extractor would create them
	// with default modes otherwise.
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Path] = true
	}
	for _, e := range l {
		for d := path.Dir(e.Path); d != "." && d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			entries = append(entries, Entry{Path: d, Type: tar.TypeDir, Mode: 0o755})
		}
	}
	sort.SliceStable(entries, func(i, j int) bool {
		// Hard links after their targets: regular files first within a path order.
		if (entries[i].Type == tar.TypeLink) != (entries[j].Type == tar.TypeLink) {
			return entries[j].Type == tar.TypeLink
		}
		return entries[i].Path < entries[j].Path
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Path] {
			return nil, fmt.Errorf("images: %s appears twice in a layer", e.Path)
		}
		seen[e.Path] = true
		h := &tar.Header{
			Name: e.Path, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: epoch, Format: tar.FormatPAX,
		}
		switch e.Type {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.Data))
		case tar.TypeLink, tar.TypeSymlink:
			h.Linkname = e.Link
		default:
			return nil, fmt.Errorf("images: %s: unsupported type %q", e.Path, e.Type)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("images: %s: %w", e.Path, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("images: %s: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	return buf.Bytes(), nil
}

// Build turns the layer into a go-containerregistry layer (gzip-compressed).
func (l Layer) Build() (v1.Layer, error) {
	data, err := l.Tar()
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Dir, File and Hardlink are entry shorthands.
func Dir(p string, mode int64) Entry { return Entry{Path: p, Type: tar.TypeDir, Mode: mode} }

// File is a regular file owned by root.
func File(p string, mode int64, data []byte) Entry {
	return Entry{Path: p, Type: tar.TypeReg, Mode: mode, Data: data}
}

// Hardlink makes p another name of target (both relative to /). Its mode
// must be the target's: extractors (containerd's among them) chmod the
// shared inode from the link's header.
func Hardlink(p, target string, mode int64) Entry {
	return Entry{Path: p, Type: tar.TypeLink, Link: target, Mode: mode}
}

// libDirs are searched for a binary's DT_NEEDED libraries, as ld.so would on
// Debian amd64.
var libDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib"}

// HostBinary is WithLibs for a binary read from host at src.
func HostBinary(host fs.FS, src, dst string, mode int64) ([]Entry, error) {
	data, err := fs.ReadFile(host, src)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	return WithLibs(host, src, data, dst, mode)
}

// WithLibs returns entries for a binary (data) installed at dst, plus every
// shared library it needs, transitively, and its ELF interpreter, read from
// host at the paths the loader looks in. Symlinked libraries become regular
// files under the name asked for. src names the binary in errors.
func WithLibs(host fs.FS, src string, data []byte, dst string, mode int64) ([]Entry, error) {
	out := []Entry{File(dst, mode, data)}
	libs, err := neededLibs(host, data)
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", src, err)
	}
	for _, p := range libs {
		b, err := fs.ReadFile(host, p)
		if err != nil {
			return nil, fmt.Errorf("images: %s needs %s: %w", src, p, err)
		}
		out = append(out, File(p, 0o755, b))
	}
	return out, nil
}

// neededLibs resolves an ELF file's interpreter and libraries, transitively,
// to paths in host. A static binary, or a script, needs none.
func neededLibs(host fs.FS, data []byte) ([]string, error) {
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	var visit func(data []byte) error
	visit = func(data []byte) error {
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			return err
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return err
			}
			interp := strings.TrimPrefix(strings.TrimRight(string(b), "\x00"), "/")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		needed, err := f.ImportedLibraries()
		if err != nil {
			return err
		}
		for _, lib := range needed {
			p, err := findLib(host, lib)
			if err != nil {
				return err
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, p)
			b, err := fs.ReadFile(host, p)
			if err != nil {
				return err
			}
			if err := visit(b); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}
	if err := visit(data); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}

func findLib(host fs.FS, name string) (string, error) {
	for _, d := range libDirs {
		p := path.Join(d, name)
		if _, err := fs.Stat(host, p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("shared library %s not found in %v: %w", name, libDirs, fs.ErrNotExist)
}
