package cribench

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func ms(xs ...float64) []time.Duration {
	var d []time.Duration
	for _, x := range xs {
		d = append(d, time.Duration(x*float64(time.Millisecond)))
	}
	return d
}

func TestBootstrapRatio(t *testing.T) {
	for _, tc := range []struct {
		name             string
		ours, upstream   []time.Duration
		wantLo, wantHi   float64
		containsExactly1 bool
	}{
		{name: "twice as slow, no spread", ours: ms(20, 20, 20, 20), upstream: ms(10, 10, 10, 10), wantLo: 2, wantHi: 2},
		{name: "same samples", ours: ms(9, 10, 11, 12, 13), upstream: ms(9, 10, 11, 12, 13), containsExactly1: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := bootstrapRatio(tc.ours, tc.upstream, 500)
			if lo > hi {
				t.Fatalf("interval %v-%v is reversed", lo, hi)
			}
			if tc.containsExactly1 {
				if lo > 1 || hi < 1 || lo == hi {
					t.Fatalf("interval %v-%v should straddle 1", lo, hi)
				}
				return
			}
			if math.Abs(lo-tc.wantLo) > 1e-9 || math.Abs(hi-tc.wantHi) > 1e-9 {
				t.Fatalf("interval %v-%v, want %v-%v", lo, hi, tc.wantLo, tc.wantHi)
			}
		})
	}
	if lo, hi := bootstrapRatio(nil, ms(1), 10); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Fatalf("no samples: got %v-%v, want NaN", lo, hi)
	}
}

func TestReportWorstRatio(t *testing.T) {
	r := &Result{Samples: map[string]map[string][]time.Duration{
		// A part of an operation (OpStart) is shown but is not the goal.
		"ours":     {OpRunSandbox: ms(100, 110, 120), OpExecSync: ms(30, 33, 36), OpStart: ms(90, 90, 90)},
		"upstream": {OpRunSandbox: ms(100, 100, 100), OpExecSync: ms(30, 30, 30), OpStart: ms(60, 60, 60)},
	}}
	var b bytes.Buffer
	worst := r.Report(&b)
	if math.Abs(worst-1.1) > 1e-9 {
		t.Fatalf("worst = %v, want 1.10 (ExecSync and RunPodSandbox medians 33/30, 110/100)\n%s", worst, b.String())
	}
	if !strings.Contains(b.String(), "worst ratio (ours/upstream, medians): 1.10") {
		t.Fatalf("report lacks the worst line:\n%s", b.String())
	}
}
