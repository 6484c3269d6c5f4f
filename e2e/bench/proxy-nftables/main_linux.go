// Command proxy-nftables compares our proxy's nftables data plane with
// upstream kube-proxy --proxy-mode=nftables, same run, same API server,
// same method: full sync time at each size, one Service change applied
// (p50/p99), proxy CPU and RSS. Each proxy runs in a network namespace of
// its own, so neither touches the host's ruleset; timings are taken from
// the kernel (nftables netlink notifications, `nft list`), not from
// the proxies' own metrics, which are printed beside them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"
	componentbasev1alpha1 "k8s.io/component-base/config/v1alpha1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
	"github.com/nodesuite/nodesuite/e2e/harness/controlplane"
)

type options struct {
	dir       string
	ours      string
	oursArgs  string
	kubeProxy string
	sizes     []int
	endpoints int
	changes   int
	spacing   time.Duration
	syncLimit time.Duration
}

// proxyKind is one of the two proxies under test.
type proxyKind struct {
	name  string // as printed
	short string // in names of host objects
	bin   string
	args  []string
	table string // the nftables table it programs (family ip)
}

func main() {
	o := options{}
	sizes := flag.String("sizes", "1000,10000", "Service counts to measure full sync at (ascending); changes and RSS at the last")
	flag.StringVar(&o.dir, "dir", "", "work directory (control plane, configs, proxy logs); default /tmp/nsbench-<pid>")
	flag.StringVar(&o.ours, "ours", "_output/bin/proxy", "our proxy binary")
	flag.StringVar(&o.oursArgs, "ours-args", "", "extra flags for our proxy, space-separated (e.g. --profiling)")
	flag.StringVar(&o.kubeProxy, "kube-proxy", filepath.Join(cacheDir(), "bin", "kube-proxy"), "upstream kube-proxy binary")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.changes, "changes", 50, "one-Service changes to time at the last size")
	flag.DurationVar(&o.spacing, "spacing", 1100*time.Millisecond, "pause after each change is seen (both proxies' minSyncPeriod is 1s)")
	flag.DurationVar(&o.syncLimit, "sync-timeout", 10*time.Minute, "give up on a full sync after this long")
	flag.Parse()
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "-sizes: bad size %q\n", s)
			os.Exit(2)
		}
		if len(o.sizes) > 0 && n <= o.sizes[len(o.sizes)-1] {
			fmt.Fprintln(os.Stderr, "-sizes must be ascending")
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.dir == "" {
		o.dir = fmt.Sprintf("/tmp/nsbench-%d", os.Getpid())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-proxy-nftables:", err)
		os.Exit(1)
	}
}

func cacheDir() string {
	if d := os.Getenv("NODESUITE_CACHE"); d != "" {
		return d
	}
	return "/var/cache/nodesuite"
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, nftables)")
	}
	for _, b := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("needs %s: %w", b, err)
		}
	}
	ours, err := filepath.Abs(o.ours)
	if err != nil {
		return err
	}
	kinds := []proxyKind{
		{name: "ours", short: "o", bin: ours, args: strings.Fields(o.oursArgs), table: "nodesuite-proxy"},
		{name: "kube-proxy", short: "k", bin: o.kubeProxy, table: "kube-proxy"},
	}
	for _, k := range kinds {
		if _, err := os.Stat(k.bin); err != nil {
			return fmt.Errorf("%s binary: %w", k.name, err)
		}
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}

	// One namespace per proxy, each joined to the host by a /30 of the
	// benchmarking range 198.18.0.0/15.
	nss := make([]*netNS, len(kinds))
	third := os.Getpid() % 250
	for i, k := range kinds {
		subnet := net.IPv4(198, 18, byte(third), byte(4*i)).To4()
		ns, err := newNetNS(ctx, fmt.Sprintf("nsbench-%d-%s", os.Getpid(), k.short), fmt.Sprintf("nsb%d%s", os.Getpid(), k.short), subnet)
		if err != nil {
			return err
		}
		defer ns.delete()
		nss[i] = ns
	}

	logf("starting a control plane in %s", o.dir)
	cp, err := controlplane.Start(ctx, controlplane.Options{
		Dir: filepath.Join(o.dir, "cp"), Log: zap.NewNop(),
		ExtraIPs: []net.IP{nss[0].hostIP, nss[1].hostIP},
	})
	if err != nil {
		return err
	}
	defer func() {
		cp.Stop()
		_ = os.RemoveAll(filepath.Join(o.dir, "cp", "etcd"))
	}()
	rc, err := cp.RESTConfig()
	if err != nil {
		return err
	}
	rc.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	kc, err := cp.Kubeconfig("kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	if err := ensureNamespace(ctx, cs); err != nil {
		return err
	}
	cfgs := make([]string, len(kinds))
	for i, k := range kinds {
		node := "nsbench-" + k.name
		if err := ensureNode(ctx, cs, node, netip.MustParseAddr(nss[i].nodeIP.String())); err != nil {
			return err
		}
		if cfgs[i], err = writeProxyConfig(o.dir, k, nss[i], node, kc, cp.ServerFor(nss[i].hostIP)); err != nil {
			return err
		}
	}

	res := make([]*result, len(kinds))
	for i := range res {
		res[i] = newResult()
	}
	pop := &population{endpoints: o.endpoints}
	for si, n := range o.sizes {
		last := si == len(o.sizes)-1
		t := time.Now()
		if err := pop.grow(ctx, cs, n); err != nil {
			return err
		}
		logf("%d Services x %d endpoints written in %s", n, o.endpoints, time.Since(t).Round(time.Millisecond))
		want := map[netip.Addr]bool{}
		for _, ip := range pop.clusterIPs {
			want[ip] = true
		}
		for i, k := range kinds {
			if err := measure(ctx, o, k, nss[i], cfgs[i], cs, pop, want, n, last, i, res[i]); err != nil {
				return fmt.Errorf("%s at %d Services: %w", k.name, n, err)
			}
		}
	}
	fmt.Printf("\nnftables Service proxy: ours vs kube-proxy %s (--proxy-mode=nftables), same run, %d endpoints per Service\n",
		"v1.37.2", o.endpoints)
	return writeTable(os.Stdout, rows(o, res[0], res[1]))
}

// writeProxyConfig writes the KubeProxyConfiguration both proxies get (the
// local cluster's, with addresses inside the namespace) and the
// kubeconfig pointing at the API server through the veth.
func writeProxyConfig(dir string, k proxyKind, ns *netNS, node, kubeconfig, server string) (string, error) {
	kcfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return "", err
	}
	for _, c := range kcfg.Clusters {
		c.Server = server
	}
	kcPath := filepath.Join(dir, k.name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kcfg, kcPath); err != nil {
		return "", err
	}
	zero := metav1.Duration{}
	ip := ns.nodeIP.String()
	cfg := &kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:           metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		ClientConnection:   componentbasev1alpha1.ClientConnectionConfiguration{Kubeconfig: kcPath},
		HostnameOverride:   node,
		BindAddress:        "0.0.0.0",
		HealthzBindAddress: net.JoinHostPort(ip, "10256"),
		MetricsBindAddress: net.JoinHostPort(ip, "10249"),
		Mode:               kubeproxyv1alpha1.ProxyMode("nftables"),
		ClusterCIDR:        cluster.PodCIDR,
		DetectLocalMode:    kubeproxyv1alpha1.LocalMode("ClusterCIDR"),
		NodePortAddresses:  []string{ip + "/32"},
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{
			MaxPerCore:            ptr.To[int32](0),
			TCPEstablishedTimeout: &zero,
			TCPCloseWaitTimeout:   &zero,
		},
		IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{LocalhostNodePorts: ptr.To(false)},
	}
	b, err := cluster.MarshalConfig(cfg)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, k.name+".yaml")
	return p, os.WriteFile(p, b, 0o644)
}

type result struct {
	fullSync, cpu, metricSync map[int]float64 // by size: seconds
	changes                   []time.Duration
	missed                    int
	netProg                   float64 // seconds, mean over the change phase (metric)
	rss, hwm                  float64 // MiB after the last full sync
}

func newResult() *result {
	return &result{fullSync: map[int]float64{}, cpu: map[int]float64{}, metricSync: map[int]float64{}, netProg: math.NaN(), rss: math.NaN(), hwm: math.NaN()}
}

func get(m map[int]float64, k int) float64 {
	if v, ok := m[k]; ok {
		return v
	}
	return math.NaN()
}

func rows(o options, ours, kube *result) []row {
	var out []row
	for _, n := range o.sizes {
		out = append(out,
			row{fmt.Sprintf("full sync, %d Services (kernel)", n), "s", get(ours.fullSync, n), get(kube.fullSync, n)},
			row{fmt.Sprintf("  proxy CPU until then, %d", n), "s", get(ours.cpu, n), get(kube.cpu, n)},
			row{fmt.Sprintf("  sync_full_proxy_rules_duration (metric), %d", n), "s", get(ours.metricSync, n), get(kube.metricSync, n)},
		)
	}
	last := o.sizes[len(o.sizes)-1]
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	nan := func(r *result, f func() float64) float64 {
		if len(r.changes) == 0 {
			return math.NaN()
		}
		return f()
	}
	out = append(out,
		row{fmt.Sprintf("one Service change p50, %d Services (kernel)", last), "ms",
			nan(ours, func() float64 { return ms(percentile(ours.changes, 50)) }), nan(kube, func() float64 { return ms(percentile(kube.changes, 50)) })},
		row{fmt.Sprintf("one Service change p99, %d Services (kernel)", last), "ms",
			nan(ours, func() float64 { return ms(percentile(ours.changes, 99)) }), nan(kube, func() float64 { return ms(percentile(kube.changes, 99)) })},
		row{"  network_programming_duration mean (metric)", "ms", ours.netProg * 1000, kube.netProg * 1000},
		row{"  changes not seen within 30s", "", float64(ours.missed), float64(kube.missed)},
		row{fmt.Sprintf("RSS after full sync, %d Services", last), "MiB", ours.rss, kube.rss},
		row{fmt.Sprintf("peak RSS (VmHWM), %d Services", last), "MiB", ours.hwm, kube.hwm},
	)
	return out
}

// proc is a running proxy.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProxy(ns *netNS, k proxyKind, cfg, logPath string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	argv := append([]string{k.bin, "--config=" + cfg, "--proxy-mode=nftables"}, k.args...)
	cmd := ns.command(argv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", k.name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// measure runs proxy k against the API's n Services: the full sync, and at
// the last size the RSS and the one-Service changes.
func measure(ctx context.Context, o options, k proxyKind, ns *netNS, cfg string, cs kubernetes.Interface,
	pop *population, want map[netip.Addr]bool, n int, last bool, index int, res *result) error {
	// A clean namespace: nothing to adopt from an earlier run.
	if _, err := ns.nft(ctx, "flush", "ruleset"); err != nil {
		return err
	}
	// Stops with this measurement.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	kw, err := ns.watchKernel(wctx, changeRange)
	if err != nil {
		return err
	}
	logPath := filepath.Join(o.dir, fmt.Sprintf("%s-%d.log", k.name, n))
	start := time.Now()
	p, err := startProxy(ns, k, cfg, logPath)
	if err != nil {
		return err
	}
	defer func() {
		p.stop()
		_, _ = ns.nft(context.Background(), "flush", "ruleset")
	}()
	done, err := waitFullSync(ctx, ns, k, p, kw.commits, want, o.syncLimit)
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, logPath)
	}
	res.fullSync[n] = done.Sub(start).Seconds()
	res.cpu[n] = procCPU(p.cmd.Process.Pid).Seconds()
	logf("%s: full sync of %d Services in %.2fs (proxy CPU %.2fs)", k.name, n, res.fullSync[n], res.cpu[n])
	metrics := "http://" + net.JoinHostPort(ns.nodeIP.String(), "10249") + "/metrics"
	if s, c, err := scrape(ctx, metrics, "kubeproxy_sync_full_proxy_rules_duration_seconds"); err == nil && c > 0 {
		res.metricSync[n] = s / c
	} else if err != nil {
		logf("%s: %v", k.name, err)
	}
	if !last {
		return nil
	}
	time.Sleep(2 * time.Second)
	res.rss, res.hwm = procMemMiB(p.cmd.Process.Pid)

	// Earlier changes (the other proxy's, seen in this one's full sync)
	// are not this phase's.
	for len(kw.addrs) > 0 {
		<-kw.addrs
	}
	s0, c0, _ := scrape(ctx, metrics, "kubeproxy_network_programming_duration_seconds")
	// The same Services in the same order for every proxy would add to
	// Services the other already grew: each proxy gets its own.
	rng := rand.New(rand.NewPCG(7, 7))
	perm := rng.Perm(n)
	for c := 0; c < o.changes; c++ {
		svc := perm[(index*o.changes+c)%n]
		ip := addrPlus(changeRange.Addr(), index*o.changes+c)
		t0, err := pop.addEndpoint(ctx, cs, svc, ip)
		if err != nil {
			return err
		}
		seen, ok := waitAddr(ctx, kw.addrs, ip, 30*time.Second)
		if !ok {
			res.missed++
			logf("%s: change %d (%s) not seen in 30s", k.name, c, ip)
			continue
		}
		res.changes = append(res.changes, seen.Sub(t0))
		time.Sleep(o.spacing)
	}
	if s1, c1, err := scrape(ctx, metrics, "kubeproxy_network_programming_duration_seconds"); err == nil && c1 > c0 {
		res.netProg = (s1 - s0) / (c1 - c0)
	}
	logf("%s: %d changes, p50 %s p99 %s", k.name, len(res.changes),
		percentile(res.changes, 50).Round(time.Microsecond), percentile(res.changes, 99).Round(time.Microsecond))
	return ctx.Err()
}

// waitFullSync returns the time of the commit after which the kernel's
// service-ips map holds every expected ClusterIP. The map is listed after
// each batch of commits, never on a timer, so the listing's cost does not
// add to the proxy's.
func waitFullSync(ctx context.Context, ns *netNS, k proxyKind, p *proc, commits <-chan commitEvent, want map[netip.Addr]bool, limit time.Duration) (time.Time, error) {
	deadline := time.After(limit)
	var lastCommit time.Time
	for {
		select {
		case ev, ok := <-commits:
			if !ok {
				return time.Time{}, errors.New("nftables event socket closed")
			}
			lastCommit = ev.at
		case <-p.done:
			return time.Time{}, fmt.Errorf("%s exited before its full sync", k.name)
		case <-deadline:
			return time.Time{}, fmt.Errorf("no full sync in %s", limit)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	drain:
		for {
			select {
			case ev := <-commits:
				lastCommit = ev.at
			default:
				break drain
			}
		}
		out, err := ns.nft(ctx, "list", "map", "ip", k.table, "service-ips")
		if err != nil {
			continue // the table or map is not there yet
		}
		if got := countPresent(out, want); got == len(want) {
			return lastCommit, nil
		}
	}
}

// waitAddr waits for a committed rule or element carrying addr.
func waitAddr(ctx context.Context, addrs <-chan addrEvent, addr netip.Addr, limit time.Duration) (time.Time, bool) {
	deadline := time.After(limit)
	for {
		select {
		case ev, ok := <-addrs:
			if !ok {
				return time.Time{}, false
			}
			if ev.addr == addr {
				return ev.at, true
			}
		case <-deadline:
			return time.Time{}, false
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

func scrape(ctx context.Context, url, name string) (sum, count float64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	return metricSumCount(resp.Body, name)
}

// procCPU is the user+system CPU time the process has used.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is f[0], utime f[11], stime f[12].
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// procMemMiB is VmRSS and VmHWM.
func procMemMiB(pid int) (rss, hwm float64) {
	rss, hwm = math.NaN(), math.NaN()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return
}
