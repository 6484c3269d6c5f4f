package runtime

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const critestOutput = `Running Suite: CRI validation
[FAIL] [sig-node] Image Manager [It] live progress line, not the summary
•••S•
Summarizing 2 Failures:
  [FAIL] [k8s.io] Image Manager [It] public image with digest should be pulled and removed [Conformance]
  /src/pkg/validate/image.go:80
  [TIMEDOUT] [k8s.io] Networking runtime should support port mapping with only container port [Conformance]
  /src/pkg/validate/networking.go:120

Ran 114 of 142 Specs in 241.532 seconds
FAIL! -- 112 Passed | 2 Failed | 0 Pending | 28 Skipped
--- FAIL: TestCRISuite (241.54s)
`

func TestParseCritest(t *testing.T) {
	got, err := ParseCritest(strings.NewReader(critestOutput))
	if err != nil {
		t.Fatal(err)
	}
	got.Summary = ""
	want := CritestResult{
		Passed: 112, Failed: 2, Skipped: 28,
		Failures: []string{
			"[k8s.io] Image Manager [It] public image with digest should be pulled and removed [Conformance]",
			"[k8s.io] Networking runtime should support port mapping with only container port [Conformance]",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseCritest(strings.NewReader("panic: boom\n")); !errors.Is(err, ErrNoSummary) {
		t.Errorf("no summary: %v, want ErrNoSummary", err)
	}
}

func TestRegressions(t *testing.T) {
	base := CritestResult{Failures: []string{"a", "b"}}
	ours := CritestResult{Failures: []string{"b", "c", "d"}}
	if diff := cmp.Diff([]string{"c", "d"}, Regressions(base, ours)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCritestArgs(t *testing.T) {
	got := CritestArgs("/s/c.sock", []string{"public image with digest", "a.b"}, "-parallel=2")
	want := []string{"-runtime-endpoint", "unix:///s/c.sock", "-image-endpoint", "unix:///s/c.sock", "-ginkgo.no-color",
		"-ginkgo.timeout=20m", `-ginkgo.skip=public image with digest|a\.b`, "-parallel=2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCompareVerdict(t *testing.T) {
	base := CritestResult{Passed: 113, Failures: []string{"a"}}
	for _, tc := range []struct {
		name string
		ours CritestResult
		ok   bool
	}{
		{"ahead", CritestResult{Passed: 114}, true},
		{"level, same failure", CritestResult{Passed: 113, Failures: []string{"a"}}, true},
		{"fewer passed", CritestResult{Passed: 112}, false},
		{"regression", CritestResult{Passed: 114, Failures: []string{"b"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CompareVerdict(base, tc.ours)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrCritestBehind)) {
				t.Errorf("CompareVerdict = %v, want ok=%t", err, tc.ok)
			}
		})
	}
}
