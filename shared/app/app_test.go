package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func runWith(fs *pflag.FlagSet) RunFunc {
	return func(ctx context.Context, s Streams, args []string) error {
		fs.Int("port", 1, "a port")
		return ParseFlags(fs, s, args, "v1.2.3")
	}
}

func TestExitStatuses(t *testing.T) {
	cases := []struct {
		args     []string
		code     int
		out, err string
	}{
		{nil, 0, "", ""},
		{[]string{"--version"}, 0, "demo v1.2.3\n", ""},
		{[]string{"--help"}, 0, "--port", ""},
		{[]string{"--bogus"}, ExitCodeUsage, "", "demo: unknown flag: --bogus\n"},
		{[]string{"--port=x"}, ExitCodeUsage, "", "--port"},
		{[]string{"extra"}, ExitCodeUsage, "", `unexpected argument "extra"`},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Exec("demo", runWith(pflag.NewFlagSet("demo", pflag.ContinueOnError)), Streams{Out: &out, Err: &errb}, c.args)
		if code != c.code || !strings.Contains(out.String(), c.out) || !strings.Contains(errb.String(), c.err) {
			t.Errorf("%v: code %d out %q err %q", c.args, code, out.String(), errb.String())
		}
		if c.code != 0 && strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v: want exactly one line on stderr, got %q", c.args, errb.String())
		}
	}
}

func TestRuntimeErrorExitsOne(t *testing.T) {
	var errb bytes.Buffer
	code := Exec("demo", func(context.Context, Streams, []string) error { return errors.New("socket gone") }, Streams{Out: &bytes.Buffer{}, Err: &errb}, nil)
	if code != 1 || errb.String() != "demo: socket gone\n" {
		t.Fatalf("code %d err %q", code, errb.String())
	}
}
