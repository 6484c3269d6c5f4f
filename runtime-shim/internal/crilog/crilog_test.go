package crilog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCopy(t *testing.T) {
	ts := time.Date(2026, 11, 26, 23, 0, 0, 5, time.UTC)
	now := func() time.Time { return ts }
	const p = "2026-11-26T23:00:00.000000005Z"
	for _, tc := range []struct {
		name, in string
		max      int
		want     []string
	}{
		{"lines", "a\nbb\n", 16, []string{p + " stdout F a", p + " stdout F bb"}},
		{"crlf and empty", "a\r\n\n", 16, []string{p + " stdout F a", p + " stdout F "}},
		{"unterminated tail", "a\nrest", 16, []string{p + " stdout F a", p + " stdout F rest"}},
		{"split long line", "abcdefghijklmnopqrstuvwxyz0123456789\n", 16, []string{p + " stdout P abcdefghijklmnop", p + " stdout P qrstuvwxyz012345", p + " stdout F 6789"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Copy(&out, strings.NewReader(tc.in), "stdout", tc.max, now); err != nil {
				t.Fatal(err)
			}
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "0.log")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Write([]byte("one\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("two\n"))
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("three\n"))
	got := map[string]string{}
	for _, p := range []string{path, path + ".1"} {
		b, _ := os.ReadFile(p)
		got[filepath.Base(p)] = string(b)
	}
	want := map[string]string{"0.log": "three\n", "0.log.1": "one\ntwo\n"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}
