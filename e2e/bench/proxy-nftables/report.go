package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// serviceIPKey matches one ClusterIP element of the service-ips verdict map
// as `nft list map` prints it, in either proxy's table.
var serviceIPKey = regexp.MustCompile(`(\d+\.\d+\.\d+\.\d+) \. tcp \. ` + strconv.Itoa(svcPort) + ` :`)

// countPresent counts the expected ClusterIPs among the map's elements.
func countPresent(listing string, want map[netip.Addr]bool) int {
	seen := map[netip.Addr]bool{}
	for _, m := range serviceIPKey.FindAllStringSubmatch(listing, -1) {
		if ip, err := netip.ParseAddr(m[1]); err == nil && want[ip] {
			seen[ip] = true
		}
	}
	return len(seen)
}

// percentile is the nearest-rank percentile (p in (0,100]) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[max(rank, 1)-1]
}

// metricSumCount reads name_sum and name_count of a histogram from a
// Prometheus text exposition: the unlabelled series, or kube-proxy's
// ip_family="IPv4" one (the bench's Services are all IPv4).
func metricSumCount(r io.Reader, name string) (sum, count float64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		series, value := line[:sp], line[sp+1:]
		metric, labels, _ := strings.Cut(series, "{")
		if labels != "" && !strings.Contains(labels, `ip_family="IPv4"`) {
			continue
		}
		var dst *float64
		switch metric {
		case name + "_sum":
			dst = &sum
		case name + "_count":
			dst = &count
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(value, 64); err != nil {
			return 0, 0, fmt.Errorf("metric %s: %w", series, err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("metric %s: %w", name, errNoMetric)
	}
	return sum, count, nil
}

var errNoMetric = errors.New("not exposed")

// row is one line of the result table; a missing value is NaN.
type row struct {
	figure     string
	unit       string
	ours, kube float64
}

func fmtValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// writeTable prints figure, ours, kube-proxy and ours/kube-proxy (below 1
// means ours is faster or smaller: every figure is lower-is-better).
func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tunit\tours\tkube-proxy\tratio ours/kube-proxy")
	for _, r := range rows {
		ratio := math.NaN()
		if !math.IsNaN(r.ours) && !math.IsNaN(r.kube) && r.kube != 0 {
			ratio = r.ours / r.kube
		}
		rs := "-"
		if !math.IsNaN(ratio) {
			rs = strconv.FormatFloat(ratio, 'f', 3, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.figure, r.unit, fmtValue(r.ours), fmtValue(r.kube), rs)
	}
	return tw.Flush()
}

// addrsIn returns the 4-byte aligned a.b.x.y values in a netlink payload
// (attribute values are 4-byte aligned).
func addrsIn(b []byte, a, bb byte) []netip.Addr {
	var out []netip.Addr
	for i := 0; i+4 <= len(b); i += 4 {
		if b[i] == a && b[i+1] == bb {
			out = append(out, netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}))
		}
	}
	return out
}
