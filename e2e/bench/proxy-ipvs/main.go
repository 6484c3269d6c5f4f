// Command proxy-ipvs is make bench-proxy-ipvs: our proxy against upstream
// kube-proxy --proxy-mode=ipvs, both in user-mode-linux (the host kernel has
// no IPVS), both watching the same real API server on the host over a tap
// (package umlhost), in the same run. For each size it fills namespace
// bench with N ClusterIP Services of E endpoints each, then boots a fresh
// guest per proxy running proxy/test/ipvsbench, which measures from the
// kernel's IPVS table. Prints a table of ours, kube-proxy and their ratio.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodesuite/nodesuite/e2e/bench/proxy-ipvs/svcload"
	"github.com/nodesuite/nodesuite/e2e/bench/proxy-ipvs/umlhost"
)

const (
	namespace = "bench"
	nodeName  = "uml-bench"
)

// result mirrors proxy/test/ipvsbench's Result.
type result struct {
	Proxy           string    `json:"proxy"`
	Services        int       `json:"services"`
	FullSyncSeconds float64   `json:"fullSyncSeconds"`
	Done            int       `json:"done"`
	ChangeMs        []float64 `json:"changeMs"`
	ChangeAckMs     []float64 `json:"changeAckMs"`
	ChangesMissed   int       `json:"changesMissed"`
	HintBy          string    `json:"hintBy"`
	HintSeconds     float64   `json:"hintSeconds"`
	MetricSeconds   float64   `json:"metricSeconds"`
	SlowestPoll     float64   `json:"slowestPollSeconds"`
	ObserverCPU     float64   `json:"observerCPUSeconds"`
	ObserverPolls   int       `json:"observerPolls"`
	ObserverPasses  int       `json:"observerPasses"`
	ObserverReads   int       `json:"observerReads"`
	RSSKiB          int       `json:"rssKiB"`
	HWMKiB          int       `json:"hwmKiB"`
	Error           string    `json:"error,omitempty"`
}

type options struct {
	sizes                     []int
	endpoints, changes        int
	mem, runSh, guest, out    string
	ours, upstream, guestPath string
	timeout                   time.Duration
	profileSeconds            int
	proxies                   []string
}

func main() {
	var o options
	sizes := flag.String("sizes", "1000,10000", "Service counts")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.changes, "changes", 50, "EndpointSlice changes timed at the largest size")
	flag.StringVar(&o.mem, "mem", "2G", "guest memory")
	flag.StringVar(&o.runSh, "run-sh", "proxy/test/uml/run.sh", "the UML runner")
	flag.StringVar(&o.guest, "guest", "_output/proxy-uml/ipvsbench", "the guest side (proxy/test/ipvsbench)")
	flag.StringVar(&o.ours, "ours", "_output/proxy-uml/proxy", "our proxy binary")
	flag.StringVar(&o.upstream, "upstream", "/var/cache/nodesuite/bin/kube-proxy", "upstream kube-proxy")
	flag.StringVar(&o.guestPath, "guest-path", "/usr/sbin:/usr/bin:/sbin:/bin", "PATH in the guest (legacy iptables first)")
	flag.StringVar(&o.out, "out", "_output/proxy-uml/bench", "where the proxies' logs go")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound on each full sync")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 0, "take a CPU profile of our proxy's first seconds (OUT/ours-N.log.pprof)")
	proxies := flag.String("proxies", "ours,upstream", "which proxies to run (a profiling run may want ours alone)")
	flag.Parse()
	o.proxies = strings.Split(*proxies, ",")
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bad -sizes %q\n", *sizes)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	sort.Ints(o.sizes)
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-proxy-ipvs:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	log, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.InfoLevel))
	defer func() { _ = log.Sync() }()
	for _, p := range []*string{&o.runSh, &o.guest, &o.ours, &o.upstream, &o.out} {
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "proxy-ipvs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	env, err := umlhost.Start(ctx, dir, log)
	if err != nil {
		return err
	}
	defer env.Close()
	cfg, err := env.CP.RESTConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 2000, 2000
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	guestIP, _, _ := strings.Cut(env.GuestCIDR, "/")
	if err := setup(ctx, client, guestIP); err != nil {
		return err
	}
	results := map[int]map[string]result{}
	have := 0
	for _, n := range o.sizes {
		t0 := time.Now()
		if err := svcload.Populate(ctx, client, namespace, have, n, o.endpoints); err != nil {
			return err
		}
		have = n
		log.Info("API objects written", zap.Int("services", n), zap.Duration("took", time.Since(t0)))
		results[n] = map[string]result{}
		changes := 0
		if n == o.sizes[len(o.sizes)-1] {
			changes = o.changes
		}
		for _, p := range []struct{ name, bin string }{{"ours", o.ours}, {"upstream", o.upstream}} {
			if !slices.Contains(o.proxies, p.name) {
				continue
			}
			t1 := time.Now()
			r, err := guest(ctx, env, o, p.name, p.bin, n, changes)
			if err != nil {
				return fmt.Errorf("%s at %d Services: %w", p.name, n, err)
			}
			log.Info("measured", zap.String("proxy", p.name), zap.Int("services", n), zap.Float64("fullSyncSeconds", r.FullSyncSeconds),
				zap.String("error", r.Error), zap.Duration("run", time.Since(t1)))
			results[n][p.name] = r
		}
	}
	printTable(os.Stdout, o, results)
	return nil
}

func setup(ctx context.Context, c kubernetes.Interface, nodeIP string) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err := c.CoreV1().Nodes().Create(ctx, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: nodeIP}}}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

func guest(ctx context.Context, env *umlhost.Env, o options, name, bin string, n, changes int) (result, error) {
	logPath := filepath.Join(o.out, fmt.Sprintf("%s-%d.log", name, n))
	cmd := env.Command(ctx, o.runSh, o.mem, "env", "PATH="+o.guestPath, o.guest, "-proxy="+name, "-bin="+bin,
		"-node="+nodeName, "-changes="+strconv.Itoa(changes), "-timeout="+o.timeout.String(), "-log="+logPath,
		"-profile-seconds="+strconv.Itoa(o.profileSeconds))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	if err := os.WriteFile(filepath.Join(o.out, fmt.Sprintf("%s-%d.guest.log", name, n)), out.Bytes(), 0o644); err != nil {
		return result{}, err
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			var r result
			err := json.Unmarshal([]byte(rest), &r)
			return r, err
		}
	}
	return result{}, fmt.Errorf("no RESULT from the guest (%v); see %s", runErr, filepath.Join(o.out, name+"-"+strconv.Itoa(n)+".guest.log"))
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func printTable(w *os.File, o options, rs map[int]map[string]result) {
	fmt.Fprintf(w, "\nIPVS proxy in user-mode-linux, %d endpoints per Service; ratio = ours / kube-proxy (lower is better)\n", o.endpoints)
	fmt.Fprintf(w, "%-44s %14s %14s %8s\n", "", "ours", "kube-proxy", "ratio")
	row := func(label string, a, b float64, unit string) {
		fa, fb := "n/a", "n/a"
		if !math.IsNaN(a) {
			fa = fmt.Sprintf("%.1f %s", a, unit)
		}
		if !math.IsNaN(b) {
			fb = fmt.Sprintf("%.1f %s", b, unit)
		}
		ratio := "n/a"
		if !math.IsNaN(a) && !math.IsNaN(b) && b > 0 {
			ratio = fmt.Sprintf("%.3f", a/b)
		}
		fmt.Fprintf(w, "%-44s %14s %14s %8s\n", label, fa, fb, ratio)
	}
	sync := func(r result) float64 {
		if r.FullSyncSeconds == 0 {
			return math.NaN()
		}
		return r.FullSyncSeconds
	}
	for _, n := range o.sizes {
		a, b := rs[n]["ours"], rs[n]["upstream"]
		row(fmt.Sprintf("full sync, %d Services", n), sync(a), sync(b), "s")
		// How the full sync's end was seen (proxy/test/ipvsbench observer):
		// a hint (a complete random sample, or the proxy's own synced
		// metric) arms GET_DEST passes over the Services not yet verified;
		// the sync is complete at the end of the pass that leaves none.
		text := func(label, a, b string) { fmt.Fprintf(w, "%-44s %14s %14s\n", label, a, b) }
		hint := func(r result) string { return fmt.Sprintf("%.1f s %s", r.HintSeconds, r.HintBy) }
		text("  observer: first pass armed at (by)", hint(a), hint(b))
		metric := func(r result) string {
			if r.MetricSeconds == 0 {
				return "not seen"
			}
			return fmt.Sprintf("%.1f s", r.MetricSeconds)
		}
		text("  observer: proxy's synced metric seen at", metric(a), metric(b))
		row("  observer: slowest poll", a.SlowestPoll, b.SlowestPoll, "s")
		// The observer shares the guest's one CPU with the proxy: its
		// own cost during the sync, to show that it is light.
		obs := func(r result) string {
			return fmt.Sprintf("%.1fs/%d/%d/%d", r.ObserverCPU, r.ObserverPolls, r.ObserverPasses, r.ObserverReads)
		}
		text("  observer: CPU/polls/passes/GET_DESTs", obs(a), obs(b))
		if len(a.ChangeMs)+len(b.ChangeMs) > 0 {
			row(fmt.Sprintf("change p50 from API write, %d Services", n), percentile(a.ChangeMs, 50), percentile(b.ChangeMs, 50), "ms")
			row(fmt.Sprintf("change p99 from API write, %d Services", n), percentile(a.ChangeMs, 99), percentile(b.ChangeMs, 99), "ms")
			row(fmt.Sprintf("change p50 from API answer, %d Services", n), percentile(a.ChangeAckMs, 50), percentile(b.ChangeAckMs, 50), "ms")
			row(fmt.Sprintf("change p99 from API answer, %d Services", n), percentile(a.ChangeAckMs, 99), percentile(b.ChangeAckMs, 99), "ms")
			fmt.Fprintf(w, "%-44s %14s %14s\n", fmt.Sprintf("  changes timed / missed (bound %s)", "5m"),
				fmt.Sprintf("%d / %d", len(a.ChangeMs), a.ChangesMissed), fmt.Sprintf("%d / %d", len(b.ChangeMs), b.ChangesMissed))
		}
		row(fmt.Sprintf("RSS after full sync, %d Services", n), float64(a.RSSKiB)/1024, float64(b.RSSKiB)/1024, "MiB")
		row(fmt.Sprintf("peak RSS (VmHWM), %d Services", n), float64(a.HWMKiB)/1024, float64(b.HWMKiB)/1024, "MiB")
		for _, r := range []result{a, b} {
			if r.Error != "" {
				fmt.Fprintf(w, "  %s at %d: %s (complete: %d of %d)\n", r.Proxy, n, r.Error, r.Done, r.Services)
			}
		}
	}
}
