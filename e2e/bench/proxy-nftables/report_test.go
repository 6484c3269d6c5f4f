package main

import (
	"errors"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCountPresent(t *testing.T) {
	want := map[netip.Addr]bool{
		netip.MustParseAddr("10.96.0.5"): true,
		netip.MustParseAddr("10.96.1.7"): true,
		netip.MustParseAddr("10.96.2.9"): true,
	}
	for _, tc := range []struct {
		name, listing string
		count         int
	}{
		{"empty", "", 0},
		{"kube-proxy", `table ip kube-proxy {
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.96.0.1 . tcp . 443 : goto service-2QRHZV4L-default/kubernetes/tcp/https,
			     10.96.0.5 . tcp . 80 : goto service-AAAA-nsbench/svc-00001/tcp/http,
			     10.96.1.7 . tcp . 80 : goto service-BBBB-nsbench/svc-00002/tcp/http }
	}
}`, 2},
		{"ours, wrong port and unknown IP ignored", `elements = { 10.96.0.5 . tcp . 80 : goto svc-nsbench/svc-00001/tcp/http, 10.96.1.7 . tcp . 81 : goto x,
	10.96.9.9 . tcp . 80 : goto y, 10.96.2.9 . tcp . 80 : goto z, 10.96.0.5 . tcp . 80 : goto dup }`, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := countPresent(tc.listing, want); got != tc.count {
				t.Errorf("countPresent = %d, want %d", got, tc.count)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 4 is the 2nd", ms(40, 10, 30, 20), 50, 20 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 100, 100 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("%s: percentile = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMetricSumCount(t *testing.T) {
	const exposition = `# HELP kubeproxy_network_programming_duration_seconds [ALPHA] In Cluster Network Programming Latency in seconds
# TYPE kubeproxy_network_programming_duration_seconds histogram
kubeproxy_network_programming_duration_seconds_bucket{ip_family="IPv4",le="0.25"} 5
kubeproxy_network_programming_duration_seconds_sum{ip_family="IPv4"} 0.5
kubeproxy_network_programming_duration_seconds_count{ip_family="IPv4"} 5
kubeproxy_network_programming_duration_seconds_sum{ip_family="IPv6"} 9
kubeproxy_network_programming_duration_seconds_count{ip_family="IPv6"} 1
kubeproxy_sync_full_proxy_rules_duration_seconds_sum 1.5
kubeproxy_sync_full_proxy_rules_duration_seconds_count 3
`
	type out struct{ Sum, Count float64 }
	for _, tc := range []struct {
		name   string
		metric string
		want   out
		err    error
	}{
		{"labelled: IPv4 only", "kubeproxy_network_programming_duration_seconds", out{0.5, 5}, nil},
		{"unlabelled", "kubeproxy_sync_full_proxy_rules_duration_seconds", out{1.5, 3}, nil},
		{"absent", "kubeproxy_sync_proxy_rules_duration_seconds", out{}, errNoMetric},
	} {
		s, c, err := metricSumCount(strings.NewReader(exposition), tc.metric)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
		if diff := cmp.Diff(tc.want, out{s, c}); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := writeTable(&b, []row{
		{"full sync", "s", 1, 4},
		{"missing", "ms", math.NaN(), 250},
	}); err != nil {
		t.Fatal(err)
	}
	want := `figure     unit  ours  kube-proxy  ratio ours/kube-proxy
full sync  s     1.00  4.00        0.250
missing    ms    -     250         -
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAddrPlus(t *testing.T) {
	if got, want := addrPlus(epBase, 99_999), netip.MustParseAddr("10.201.134.159"); got != want {
		t.Errorf("addrPlus = %v, want %v", got, want)
	}
}

func TestAddrsIn(t *testing.T) {
	payload := []byte{
		0, 0, 10, 210, // unaligned: not an address
		1, 0, 10, 210,
		10, 210, 0, 7, // aligned: 10.210.0.7
		10, 200, 0, 7, // another /16
		10, 210, 1, 2, // 10.210.1.2
		10, 210, // truncated
	}
	got := addrsIn(payload, 10, 210)
	want := []netip.Addr{netip.MustParseAddr("10.210.0.7"), netip.MustParseAddr("10.210.1.2")}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
