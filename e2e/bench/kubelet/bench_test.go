package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, 1 * time.Millisecond}} {
		if got := percentile(ds, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile([]time.Duration{3, 1, 2}, 99); got != 3 {
		t.Errorf("p99 of 3 = %v, want 3", got)
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS("Name:\tkubelet\nVmPeak:\t 900 kB\nVmRSS:\t   81234 kB\nThreads:\t12\n")
	if err != nil || got != 81234*1024 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 81234*1024)
	}
	if _, err := parseVmRSS("Name:\tx\n"); err == nil {
		t.Error("no VmRSS line: want an error")
	}
}
