package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// callCounts are cumulative request counters: the API server's requests by
// verb and resource (apiserver_request_total, every client's) and the
// kubelet's CRI calls by method (kubelet_runtime_operations_total, which
// both kubelets serve on /metrics), and the seconds the kubelet's API
// requests waited in its client-side rate limiter, with their number
// (rest_client_rate_limiter_duration_seconds, also on both).
type callCounts map[string]float64

// takeCalls reads both counters; a counter that cannot be read is left out
// (the run's figures do not depend on it).
func (b *bench) takeCalls(ctx context.Context) callCounts {
	out := callCounts{}
	if data, err := b.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx); err == nil {
		parseCounter(data, "apiserver_request_total", func(l map[string]string, v float64) { out[apiKey(l)] += v })
	}
	nodes, err := b.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		return out
	}
	if data, err := b.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodes.Items[0].Name, "proxy/metrics").DoRaw(ctx); err == nil {
		parseCounter(data, "kubelet_runtime_operations_total", func(l map[string]string, v float64) {
			out["cri "+l["operation_type"]] += v
		})
		parseCounter(data, "rest_client_rate_limiter_duration_seconds_sum", func(_ map[string]string, v float64) {
			out[limiterWait] += v
		})
		parseCounter(data, "rest_client_rate_limiter_duration_seconds_count", func(_ map[string]string, v float64) {
			out[limiterRequests] += v
		})
	}
	return out
}

// The kubelet's client-side rate limiter counters (kind "limiter").
const (
	limiterWait     = "limiter wait-s"
	limiterRequests = "limiter requests"
)

// apiKey names an API request counter: verb, resource.group/subresource.
func apiKey(l map[string]string) string {
	res := l["resource"]
	if l["group"] != "" {
		res += "." + l["group"]
	}
	if l["subresource"] != "" {
		res += "/" + l["subresource"]
	}
	return "api " + l["verb"] + " " + res
}

// parseCounter calls f with the labels and value of each sample of the
// named metric in Prometheus text format (label values here hold no
// quotes, commas or braces).
func parseCounter(data []byte, name string, f func(labels map[string]string, v float64)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		end := strings.LastIndexByte(rest, '}')
		if end < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, kv := range strings.Split(rest[:end], ",") {
			k, val, ok := strings.Cut(kv, "=")
			if ok {
				labels[k] = strings.Trim(val, `"`)
			}
		}
		f(labels, v)
	}
}

// perPod is (b-a)/n for every counter that grew.
func perPod(a, b callCounts, n int) callCounts {
	out := callCounts{}
	for k, v := range b {
		if d := v - a[k]; d > 0 && n > 0 {
			out[k] = d / float64(n)
		}
	}
	return out
}

// print writes the counters, largest first, CRI and API apart.
func (c callCounts) print(out io.Writer, name string) {
	for _, kind := range []string{"cri", "api"} {
		type kv struct {
			k string
			v float64
		}
		var all []kv
		var sum float64
		for k, v := range c {
			if rest, ok := strings.CutPrefix(k, kind+" "); ok {
				all = append(all, kv{rest, v})
				sum += v
			}
		}
		if len(all) == 0 {
			continue
		}
		sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
		var parts []string
		for _, e := range all {
			parts = append(parts, fmt.Sprintf("%s %.1f", e.k, e.v))
		}
		what := "CRI calls by the kubelet"
		if kind == "api" {
			what = "API requests (all clients)"
		}
		fmt.Fprintf(out, "  %s: %s per Pod, %.1f in all: %s\n", name, what, sum, strings.Join(parts, ", "))
	}
	if n := c[limiterRequests]; n > 0 {
		fmt.Fprintf(out, "  %s: kubelet API requests through its client-side rate limiter %.1f per Pod, waiting in it %.0f ms per Pod (%.0f ms per request)\n",
			name, n, 1000*c[limiterWait], 1000*c[limiterWait]/n)
	}
}
