package runtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CritestSkip are the specs skipped on this machine: pulling by a pinned
// upstream digest cannot work without the upstream registry.
var CritestSkip = []string{"public image with digest"}

// CritestTimeout bounds a whole critest run: a spec that hangs (say, an
// attach that never returns) must not hold the suite for ginkgo's default
// hour. containerd's CRI takes about 3 minutes here.
const CritestTimeout = "20m"

// CritestArgs are critest's flags against socket.
func CritestArgs(socket string, skip []string, extra ...string) []string {
	args := []string{
		"-runtime-endpoint", "unix://" + socket,
		"-image-endpoint", "unix://" + socket,
		"-ginkgo.no-color",
		"-ginkgo.timeout=" + CritestTimeout,
	}
	if len(skip) > 0 {
		qs := make([]string, len(skip))
		for i, s := range skip {
			qs[i] = regexp.QuoteMeta(s)
		}
		args = append(args, "-ginkgo.skip="+strings.Join(qs, "|"))
	}
	return append(args, extra...)
}

// CritestResult is critest's summary.
type CritestResult struct {
	Passed, Failed, Pending, Skipped int
	// Failures are the failed specs' descriptions, as critest's summary lists them.
	Failures []string
	// Summary is the summary's text as critest printed it.
	Summary string
}

// ErrNoSummary means critest ended without printing its summary.
var ErrNoSummary = errors.New("critest printed no summary")

var (
	countsRE = regexp.MustCompile(`(\d+) Passed \| (\d+) Failed \| (?:\d+ Flaked \| )?(\d+) Pending \| (\d+) Skipped`)
	failRE   = regexp.MustCompile(`^\s*\[(?:FAIL|TIMEDOUT|PANICKED|INTERRUPTED)\] (.*)$`)
)

// ParseCritest reads critest's output for its summary: the "Ran N of M
// Specs" block with its counts, and the failures it lists above them.
func ParseCritest(r io.Reader) (CritestResult, error) {
	var res CritestResult
	var summary []string
	inSummary, found := false, false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	seen := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Summarizing ") && strings.Contains(line, "Failure") {
			inSummary = true
		}
		if strings.HasPrefix(line, "Ran ") && strings.Contains(line, " Specs in ") {
			inSummary = true
		}
		if inSummary {
			summary = append(summary, line)
			if m := failRE.FindStringSubmatch(line); m != nil {
				// The summary lists "[FAIL] [sig] Container ... [It] spec name"; keep the text.
				name := strings.TrimSpace(m[1])
				if !seen[name] {
					seen[name] = true
					res.Failures = append(res.Failures, name)
				}
			}
		}
		if m := countsRE.FindStringSubmatch(line); m != nil && inSummary {
			res.Passed, _ = strconv.Atoi(m[1])
			res.Failed, _ = strconv.Atoi(m[2])
			res.Pending, _ = strconv.Atoi(m[3])
			res.Skipped, _ = strconv.Atoi(m[4])
			found = true
			inSummary = false
		}
	}
	if err := sc.Err(); err != nil {
		return res, fmt.Errorf("runtime: reading critest output: %w", err)
	}
	if !found {
		return res, ErrNoSummary
	}
	sort.Strings(res.Failures)
	res.Summary = strings.Join(summary, "\n")
	return res, nil
}

// RunCritest runs the critest binary against socket, teeing its output to
// out and to the file logPath, and returns its summary. A failing spec is
// not an error: the result says how many failed.
func RunCritest(ctx context.Context, critest, socket, logPath string, out io.Writer, extra ...string) (CritestResult, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return CritestResult{}, fmt.Errorf("runtime: %w", err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, critest, CritestArgs(socket, CritestSkip, extra...)...)
	// Interrupted, ginkgo still cleans up and prints its summary.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	// critest writes temporary files in its working directory's temp dir.
	cmd.Dir = os.TempDir()
	w := io.MultiWriter(logf, out)
	cmd.Stdout, cmd.Stderr = w, w
	runErr := cmd.Run()
	if _, err := logf.Seek(0, io.SeekStart); err != nil {
		return CritestResult{}, fmt.Errorf("runtime: %w", err)
	}
	f, err := os.Open(logPath)
	if err != nil {
		return CritestResult{}, fmt.Errorf("runtime: %w", err)
	}
	defer f.Close()
	res, err := ParseCritest(f)
	if err != nil {
		return res, fmt.Errorf("runtime: critest (%v): %w; output in %s", runErr, err, logPath)
	}
	return res, nil
}

// Regressions are the specs failing in ours but not in base.
func Regressions(base, ours CritestResult) []string {
	ok := map[string]bool{}
	for _, f := range base.Failures {
		ok[f] = true
	}
	var out []string
	for _, f := range ours.Failures {
		if !ok[f] {
			out = append(out, f)
		}
	}
	return out
}

// ErrCritestBehind: ours passes fewer critest specs than containerd's CRI,
// or fails one that containerd passes.
var ErrCritestBehind = errors.New("runtime-shim is behind containerd's CRI on critest")

// CompareVerdict is the gate of a critest-compare run: nil when ours passes
// at least as many specs as base and fails none that base passes.
func CompareVerdict(base, ours CritestResult) error {
	if reg := Regressions(base, ours); len(reg) > 0 {
		return fmt.Errorf("%w: %d specs fail only on ours: %s", ErrCritestBehind, len(reg), strings.Join(reg, "; "))
	}
	if ours.Passed < base.Passed {
		return fmt.Errorf("%w: %d passed, containerd %d", ErrCritestBehind, ours.Passed, base.Passed)
	}
	return nil
}
