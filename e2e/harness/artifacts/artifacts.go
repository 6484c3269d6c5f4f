// Package artifacts builds the upstream binaries the harness runs (runtime
// stack, control plane, test tools) from the Go module proxy, through the
// modules under tools/, and caches them by version outside the repo so fresh
// clones and CI runs on the same machine reuse them.
//
// Layout under the cache root ($NODESUITE_CACHE, default /var/cache/nodesuite):
//
//	bin/<binary>       stable names the harness runs
//	cni/bin/<plugin>   CNI plugins
//	images/<name>.tar  images (package images)
//	stamps/<component>.json  what each installed component was built from
//	logs/<component>.log     the last build's output
//	warm/              the Kubernetes build (adopted if another process runs it)
package artifacts

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultRoot is the cache root when $NODESUITE_CACHE is unset.
const DefaultRoot = "/var/cache/nodesuite"

// ErrUnknown is returned for a name that is neither a component nor a binary.
var ErrUnknown = errors.New("unknown artifact")

// ErrBuild wraps every failed build step.
var ErrBuild = errors.New("build failed")

// Artifacts are the paths of the installed binaries.
type Artifacts struct {
	Root      string
	BinDir    string
	CNIBinDir string
	ImagesDir string
	// ImageBinDir holds the programs baked into images (pause, webserver, nnp).
	ImageBinDir string
}

// Bin is the path of an installed binary in bin/.
func (a *Artifacts) Bin(name string) string { return filepath.Join(a.BinDir, name) }

// Builder decides what is missing and builds it.
type Builder struct {
	// Root is the cache root.
	Root string
	// ToolsDir is the repo's tools/ directory.
	ToolsDir string
	// Go runs the go command; tests replace it.
	Go Runner
	// Progress receives one line per component; nil means the logger.
	Log *zap.Logger
	// Now and Heartbeat are seams for tests.
	Now       func() time.Time
	Heartbeat time.Duration
	// AdoptWait is how long to wait for another process's build before
	// building ourselves; AdoptPoll how often to look.
	AdoptPoll time.Duration
	// running reports whether some process is writing into dir (the lead's
	// or another harness's Kubernetes build); a seam for tests.
	running func(dir string) bool
}

// NewBuilder returns a Builder for the cache root (empty: $NODESUITE_CACHE or
// DefaultRoot) and the repo whose tools/ it builds from (empty: found by
// walking up from the working directory to go.work).
func NewBuilder(log *zap.Logger, root, repo string) (*Builder, error) {
	if root == "" {
		root = CacheRoot()
	}
	if repo == "" {
		var err error
		if repo, err = FindRepo(); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Builder{
		Root: root, ToolsDir: filepath.Join(repo, "tools"),
		Go: ExecRunner{}, Log: log, Now: time.Now,
		Heartbeat: time.Minute, AdoptPoll: 5 * time.Second,
		running: buildRunningInto,
	}, nil
}

// CacheRoot is $NODESUITE_CACHE or DefaultRoot.
func CacheRoot() string {
	if r := os.Getenv("NODESUITE_CACHE"); r != "" {
		return r
	}
	return DefaultRoot
}

// FindRepo walks up from the working directory to the directory holding go.work.
func FindRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repo: no go.work above the working directory: %w", os.ErrNotExist)
		}
		dir = parent
	}
}

// Ensure builds whatever of names (components or binaries; none means every
// non-optional component) is missing or stale, with the default Builder.
func Ensure(ctx context.Context, log *zap.Logger, names ...string) (*Artifacts, error) {
	b, err := NewBuilder(log, "", "")
	if err != nil {
		return nil, err
	}
	return b.Ensure(ctx, names...)
}

// Paths returns the layout without building anything.
func (b *Builder) Paths() *Artifacts {
	return &Artifacts{
		Root:        b.Root,
		BinDir:      filepath.Join(b.Root, "bin"),
		CNIBinDir:   filepath.Join(b.Root, "cni", "bin"),
		ImagesDir:   filepath.Join(b.Root, "images"),
		ImageBinDir: filepath.Join(b.Root, "images", "bin"),
	}
}

// Resolve maps names to components, in build order, without duplicates.
func Resolve(names ...string) ([]Component, error) {
	want := map[string]bool{}
	for _, n := range names {
		if n == "all" {
			for _, c := range Components {
				want[c.Name] = true
			}
			continue
		}
		c, ok := Lookup(n)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknown, n)
		}
		want[c.Name] = true
	}
	var out []Component
	for _, c := range Components {
		if want[c.Name] || (len(names) == 0 && !c.Optional) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Ensure builds whatever of names is missing or stale. It locks each
// component while it looks at it, so two harness processes never build the
// same thing at once, yet one needing only the runtime stack does not wait
// for another's Kubernetes build.
func (b *Builder) Ensure(ctx context.Context, names ...string) (*Artifacts, error) {
	comps, err := Resolve(names...)
	if err != nil {
		return nil, err
	}
	a := b.Paths()
	for _, d := range []string{a.BinDir, a.CNIBinDir, a.ImagesDir, a.ImageBinDir, b.dir("stamps"), b.dir("logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("artifacts: %w", err)
		}
	}
	for _, c := range comps {
		unlock, err := lockFile(ctx, b.dir("stamps", c.Name+".lock"))
		if err != nil {
			return nil, err
		}
		err = b.ensure(ctx, c)
		unlock()
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (b *Builder) dir(parts ...string) string {
	return filepath.Join(append([]string{b.Root}, parts...)...)
}

// The tools modules live inside the repo but outside go.work on purpose (their
// dependency graphs must not mix with the daemons'), so every go command on
// them runs with GOWORK=off.

// Stamp records what an installed component was built from.
type Stamp struct {
	Component string `json:"component"`
	Version   string `json:"version"`
	// Hash covers the tools module's go.mod, go.sum and Go files and the
	// build steps, so any change to how it is built rebuilds it.
	Hash string `json:"hash"`
}

// Want computes the stamp c should have.
func (b *Builder) Want(c Component) (Stamp, error) {
	h := sha256.New()
	mod := filepath.Join(b.ToolsDir, c.Module)
	var files []string
	err := filepath.WalkDir(mod, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n := d.Name()
		if !d.IsDir() && (n == "go.mod" || n == "go.sum" || strings.HasSuffix(n, ".go")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return Stamp{}, fmt.Errorf("artifacts: tools module %s: %w", c.Module, err)
	}
	sort.Strings(files)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Stamp{}, fmt.Errorf("artifacts: %w", err)
		}
		rel, _ := filepath.Rel(mod, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(data))
		h.Write(data)
	}
	fmt.Fprintf(h, "%s %s %v\n", c.Version, c.SourceModule, c.Binaries)
	for _, s := range c.Steps {
		fmt.Fprintf(h, "%q %q %v\n", s.Env, s.Args, s.InSource)
	}
	return Stamp{Component: c.Name, Version: c.Version, Hash: hex.EncodeToString(h.Sum(nil))}, nil
}

func (b *Builder) stampPath(c Component) string { return b.dir("stamps", c.Name+".json") }

func (b *Builder) installDir(c Component) string {
	switch c.place {
	case inCNIBin:
		return b.dir("cni", "bin")
	case inImageBin:
		return b.dir("images", "bin")
	}
	return b.dir("bin")
}

// Fresh reports whether c is installed with the stamp it should have.
func (b *Builder) Fresh(c Component) (bool, error) {
	want, err := b.Want(c)
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(b.stampPath(c))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("artifacts: %w", err)
	}
	var have Stamp
	if err := json.Unmarshal(data, &have); err != nil || have != want {
		return false, nil
	}
	for _, bin := range c.Binaries {
		if fi, err := os.Stat(filepath.Join(b.installDir(c), bin)); err != nil || fi.Mode()&0o111 == 0 {
			return false, nil
		}
	}
	return true, nil
}

func (b *Builder) ensure(ctx context.Context, c Component) error {
	fresh, err := b.Fresh(c)
	if err != nil {
		return err
	}
	if fresh {
		b.Log.Info(fmt.Sprintf("%-12s %-8s cached", c.Name, c.Version))
		return nil
	}
	want, err := b.Want(c)
	if err != nil {
		return err
	}
	start := b.Now()
	b.Log.Info(fmt.Sprintf("%-12s %-8s building (log %s)", c.Name, c.Version, b.dir("logs", c.Name+".log")))
	stop := b.heartbeat(c, start)
	if c.adopt {
		err = b.adoptOrBuild(ctx, c)
	} else {
		err = b.build(ctx, c)
	}
	stop()
	if err != nil {
		b.Log.Error(fmt.Sprintf("%-12s %-8s failed after %s", c.Name, c.Version, b.Now().Sub(start).Round(time.Second)))
		return err
	}
	data, _ := json.Marshal(want)
	if err := os.WriteFile(b.stampPath(c), data, 0o644); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	b.Log.Info(fmt.Sprintf("%-12s %-8s built in %s", c.Name, c.Version, b.Now().Sub(start).Round(time.Second)))
	return nil
}

// heartbeat logs a line per Heartbeat while a long build runs, so a cold
// build of tens of minutes does not look hung.
func (b *Builder) heartbeat(c Component, start time.Time) func() {
	if b.Heartbeat <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	t := time.NewTicker(b.Heartbeat)
	go func() {
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				b.Log.Info(fmt.Sprintf("%-12s %-8s still building, %s", c.Name, c.Version, b.Now().Sub(start).Round(time.Second)))
			}
		}
	}()
	return func() { close(done) }
}

// build runs c's steps into a staging dir and installs the results.
func (b *Builder) build(ctx context.Context, c Component) error {
	stage, err := os.MkdirTemp(b.Root, ".stage-"+c.Name+"-")
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer os.RemoveAll(stage)
	logf, err := os.Create(b.dir("logs", c.Name+".log"))
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer logf.Close()
	if err := b.runSteps(ctx, c, stage, logf); err != nil {
		return err
	}
	return b.install(c, stage)
}

func (b *Builder) runSteps(ctx context.Context, c Component, out string, logw io.Writer) error {
	modDir := filepath.Join(b.ToolsDir, c.Module)
	srcDir := ""
	for _, s := range c.Steps {
		dir := modDir
		if s.InSource {
			if srcDir == "" {
				var err error
				if srcDir, err = b.sourceCopy(ctx, c, modDir, logw); err != nil {
					return err
				}
			}
			dir = srcDir
		}
		args := make([]string, len(s.Args))
		for i, a := range s.Args {
			args[i] = strings.ReplaceAll(a, OutVar, out)
		}
		fmt.Fprintf(logw, "+ (cd %s && %s go %s)\n", dir, strings.Join(s.Env, " "), strings.Join(args, " "))
		env := append([]string{"GOWORK=off"}, s.Env...)
		if err := b.Go.Run(ctx, Cmd{Dir: dir, Env: env, Args: args, Stdout: logw}); err != nil {
			return fmt.Errorf("%w: %s: go %s (see %s): %w", ErrBuild, c.Name, args[0], b.dir("logs", c.Name+".log"), err)
		}
	}
	return nil
}

// sourceCopy makes a writable copy of c.SourceModule from the module cache
// (downloading it through the tools module) under <root>/src.
func (b *Builder) sourceCopy(ctx context.Context, c Component, modDir string, logw io.Writer) (string, error) {
	var buf bytes.Buffer
	if err := b.Go.Run(ctx, Cmd{Dir: modDir, Env: []string{"GOWORK=off"}, Args: []string{"mod", "download", "-json", c.SourceModule}, Stdout: &buf, Stderr: logw}); err != nil {
		return "", fmt.Errorf("%w: %s: go mod download %s: %w", ErrBuild, c.Name, c.SourceModule, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(buf.Bytes(), &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("%w: %s: go mod download %s gave no directory: %q", ErrBuild, c.Name, c.SourceModule, buf.String())
	}
	dst := b.dir("src", strings.ReplaceAll(c.SourceModule, "/", "_"))
	if err := os.RemoveAll(dst); err != nil {
		return "", fmt.Errorf("artifacts: %w", err)
	}
	fmt.Fprintf(logw, "+ copy %s -> %s\n", info.Dir, dst)
	if err := copyTree(info.Dir, dst); err != nil {
		return "", fmt.Errorf("artifacts: copy %s: %w", c.SourceModule, err)
	}
	return dst, nil
}

// install moves each built binary into place (rename within one filesystem
// is atomic, so a running process keeps its old inode).
func (b *Builder) install(c Component, from string) error {
	dst := b.installDir(c)
	for _, bin := range c.Binaries {
		src := filepath.Join(from, bin)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("%w: %s: build produced no %s: %w", ErrBuild, c.Name, bin, err)
		}
		tmp := filepath.Join(dst, "."+bin+".new")
		if err := copyFile(src, tmp); err != nil {
			return fmt.Errorf("artifacts: install %s: %w", bin, err)
		}
		if err := os.Rename(tmp, filepath.Join(dst, bin)); err != nil {
			return fmt.Errorf("artifacts: install %s: %w", bin, err)
		}
	}
	return nil
}

// BuildOK is the line the Kubernetes build appends to warm/build.log when done.
const BuildOK = "BUILD-OK"

// adoptOrBuild installs the Kubernetes binaries from warm/: when its
// build.log ends with BUILD-OK they are used as they are; when another
// process is still building into it, it waits for that; otherwise it runs
// the build itself into warm/, logging to warm/build.log the same way.
func (b *Builder) adoptOrBuild(ctx context.Context, c Component) error {
	warm := b.dir("warm")
	logPath := filepath.Join(warm, "build.log")
	want, err := b.Want(c)
	if err != nil {
		return err
	}
	// warm/stamp.json says what a build of ours put there; a build without
	// it (the lead's first one) is taken as it is.
	stampPath := filepath.Join(warm, "stamp.json")
	for {
		ok, err := logSays(logPath, BuildOK)
		if err != nil {
			return err
		}
		var have Stamp
		if data, err := os.ReadFile(stampPath); err == nil {
			if json.Unmarshal(data, &have) != nil || have != want {
				ok = false
			}
		}
		if ok && allExist(warm, c.Binaries) {
			return b.install(c, warm)
		}
		if !b.running(warm) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("artifacts: waiting for the build in %s: %w", warm, ctx.Err())
		case <-time.After(b.AdoptPoll):
		}
	}
	if err := os.MkdirAll(warm, 0o755); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	defer logf.Close()
	if err := b.runSteps(ctx, c, warm, logf); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(logf, BuildOK); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	data, _ := json.Marshal(want)
	if err := os.WriteFile(stampPath, data, 0o644); err != nil {
		return fmt.Errorf("artifacts: %w", err)
	}
	return b.install(c, warm)
}

func logSays(path, word string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("artifacts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	found := false
	for sc.Scan() {
		found = strings.TrimSpace(sc.Text()) == word
	}
	return found, nil
}

func allExist(dir string, names []string) bool {
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			return false
		}
	}
	return true
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies a module directory (regular files and dirs only; module
// cache trees hold nothing else), making everything writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, target)
	})
}
