package artifacts

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Cmd is one `go` invocation.
type Cmd struct {
	Dir  string
	Env  []string // added to the inherited environment, overriding it
	Args []string // arguments after "go"
	// Stdout receives standard output; standard error goes there too unless
	// Stdout is a buffer the caller parses (then stderr goes to Stderr).
	Stdout io.Writer
	Stderr io.Writer
}

// Runner runs the go command: the seam unit tests replace.
type Runner interface {
	Run(ctx context.Context, c Cmd) error
}

// ExecRunner runs the real go command, the one in $PATH (or /usr/local/go/bin).
type ExecRunner struct{}

// Run implements Runner.
func (ExecRunner) Run(ctx context.Context, c Cmd) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join("/usr/local/go/bin", "go")
	}
	cmd := exec.CommandContext(ctx, goBin, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = mergeEnv(os.Environ(), c.Env)
	cmd.Stdout = c.Stdout
	cmd.Stderr = c.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = c.Stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(c.Args, " "), err)
	}
	return nil
}

// mergeEnv overrides base with extra, key by key.
func mergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	set := map[string]bool{}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}
