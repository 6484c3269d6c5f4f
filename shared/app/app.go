// Package app is the one place a daemon's process exits: main calls Main with
// the daemon's Run, in the style of kind's app.Main. Run returns errors; Main
// turns them into the exit status.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/nodesuite/nodesuite/shared/signals"
)

// Streams are the process's standard streams, replaceable in tests.
type Streams struct {
	Out, Err io.Writer
}

// RunFunc is a daemon's entry point: it parses args, runs until ctx is
// cancelled (by a signal) and returns nil after a clean shutdown.
type RunFunc func(ctx context.Context, streams Streams, args []string) error

// ExitCodeUsage is the exit status for bad flags or configuration.
const ExitCodeUsage = 2

// UsageError marks an error the user can fix with different flags or config.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef builds a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Err: fmt.Errorf(format, args...)} }

// ErrHelp is returned by Run when --help or --version printed and nothing else is to be done.
var ErrHelp = pflag.ErrHelp

// Main runs run with os.Args and exits. Only this function exits.
func Main(name string, run RunFunc) {
	os.Exit(Exec(name, run, Streams{Out: os.Stdout, Err: os.Stderr}, os.Args[1:]))
}

// Exec runs run under a signal context and returns the exit status; one line
// on stderr names the problem when run fails.
func Exec(name string, run RunFunc, streams Streams, args []string) int {
	ctx, stop := signals.Context(context.Background())
	defer stop()
	err := run(ctx, streams, args)
	switch {
	case err == nil, errors.Is(err, ErrHelp):
		return 0
	case isUsage(err):
		fmt.Fprintf(streams.Err, "%s: %v\n", name, err)
		return ExitCodeUsage
	default:
		fmt.Fprintf(streams.Err, "%s: %v\n", name, err)
		return 1
	}
}

func isUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}

// ParseFlags parses args into fs and handles --help and --version the same
// way for every daemon. It returns ErrHelp when the process should exit 0.
func ParseFlags(fs *pflag.FlagSet, streams Streams, args []string, version string) error {
	var showVersion bool
	fs.BoolVar(&showVersion, "version", false, "Print version information and exit.")
	fs.SetOutput(io.Discard) // errors are returned and printed once by Exec
	fs.SetInterspersed(true)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintf(streams.Out, "Usage of %s:\n%s", fs.Name(), fs.FlagUsages())
			return ErrHelp
		}
		return &UsageError{Err: err}
	}
	if showVersion {
		fmt.Fprintf(streams.Out, "%s %s\n", fs.Name(), version)
		return ErrHelp
	}
	if fs.NArg() > 0 {
		return Usagef("unexpected argument %q: this command takes only flags", fs.Arg(0))
	}
	return nil
}
