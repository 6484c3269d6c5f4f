package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/e2e/framework"
	"github.com/nodesuite/nodesuite/e2e/harness/cluster"
)

// podTimeout bounds one Pod's start; a kubelet that misses it fails the run.
const podTimeout = 3 * time.Minute

type bench struct {
	log           *zap.Logger
	repo, cache   string
	layout        cluster.Layout
	client        kubernetes.Interface
	single, burst int
	settle        time.Duration
	profiles      string
}

// result is one kubelet's figures.
type result struct {
	kubelet         cluster.Choice
	single, burst   []time.Duration // per-Pod start latency
	idleRSS, podRSS uint64          // bytes
	// burstCPU is the kubelet's CPU time (user+system) while the burst
	// started, to tell its own cost from the runtime's.
	burstCPU time.Duration
	// burstProcs is every process's CPU during each round's burst, to show
	// where the burst's time goes (the runtime, the API server, the kubelet).
	burstProcs []burstCPU
}

// merge pools the rounds of one kubelet: every latency, the median RSS,
// the mean kubelet CPU per burst and each round's CPU breakdown.
func merge(rs []result) result {
	var m result
	var idle, pods []time.Duration // RSS bytes, sorted with percentile
	for _, r := range rs {
		m.kubelet = r.kubelet
		m.single = append(m.single, r.single...)
		m.burst = append(m.burst, r.burst...)
		idle = append(idle, time.Duration(r.idleRSS))
		pods = append(pods, time.Duration(r.podRSS))
		m.burstCPU += r.burstCPU
		m.burstProcs = append(m.burstProcs, r.burstProcs...)
	}
	if len(rs) > 0 {
		m.burstCPU /= time.Duration(len(rs))
	}
	m.idleRSS, m.podRSS = uint64(percentile(idle, 50)), uint64(percentile(pods, 50))
	return m
}

func client(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	// The burst creates 50 Pods at once; client-go's default 5 QPS would
	// measure its own throttling.
	cfg.QPS, cfg.Burst = 200, 200
	return kubernetes.NewForConfig(cfg)
}

// swap puts kubelet k on the node and waits until it renewed the node's
// Lease and the Node is Ready.
func (b *bench) swap(ctx context.Context, k cluster.Choice) error {
	start := time.Now()
	if _, err := cluster.SwapKubelet(ctx, b.log, b.layout, b.repo, b.cache, k, 30*time.Second); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		nodes, err := b.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil || len(nodes.Items) != 1 {
			return false, nil
		}
		n := nodes.Items[0]
		lease, err := b.client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil || lease.Spec.RenewTime == nil || !lease.Spec.RenewTime.After(start) {
			return false, nil
		}
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == v1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// kubeletRSS is VmRSS of the node's kubelet process, in bytes.
func (b *bench) kubeletRSS() (uint64, error) {
	pid, err := b.kubeletPID()
	if err != nil {
		return 0, err
	}
	path := fmt.Sprintf("/proc/%d/status", pid)
	b.logRSSParts(path)
	return vmRSS(path)
}

// kubeletPID is the node's kubelet process, from the cluster's state.
func (b *bench) kubeletPID() (int, error) {
	st, err := cluster.LoadState(b.layout.State())
	if err != nil {
		return 0, err
	}
	for i := len(st.Processes) - 1; i >= 0; i-- {
		if p := st.Processes[i]; p.Name == "kubelet" {
			return p.PID, nil
		}
	}
	return 0, errors.New("no kubelet in state.json")
}

// clusterPIDs are the processes the cluster started (etcd, control plane,
// containerd, kubelet, ...), from its state.
func (b *bench) clusterPIDs() (map[int]bool, error) {
	st, err := cluster.LoadState(b.layout.State())
	if err != nil {
		return nil, err
	}
	pids := map[int]bool{}
	for _, p := range st.Processes {
		pids[p.PID] = true
	}
	return pids, nil
}

// kubeletCPU is the node's kubelet's user+system CPU time so far.
func (b *bench) kubeletCPU() (time.Duration, error) {
	pid, err := b.kubeletPID()
	if err != nil {
		return 0, err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(data))
}

// parseStatCPU reads utime+stime (fields 14 and 15, in clock ticks of
// 1/100 s on Linux) from a /proc/PID/stat line; the command name, which
// may hold spaces, ends at the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' in stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short stat line %q", stat)
	}
	var ticks uint64
	for _, s := range f[11:13] { // fields 14 and 15 of the whole line
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// logRSSParts logs the anonymous (heap, stacks) and file-backed (the
// binary's text and data) parts of the RSS, to tell which one to cut.
func (b *bench) logRSSParts(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var parts []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "Rss") || strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "Threads") {
			parts = append(parts, strings.Join(strings.Fields(line), " "))
		}
	}
	b.log.Info("kubelet memory", zap.Strings("status", parts))
}

// saveHeap saves the node's kubelet's heap profile, read through the API
// server's node proxy (both kubelets serve /debug/pprof by default).
func (b *bench) saveHeap(ctx context.Context, k cluster.Choice, phase string) {
	if b.profiles != "" {
		b.saveProfile(ctx, k, "heap", nil, fmt.Sprintf("heap-%s-%s.pb.gz", k, phase))
	}
}

// saveCPUProfile saves the kubelet's CPU profile over the next seconds
// (the burst's busiest part) when -profiles is set; the channel closes once
// it is written.
func (b *bench) saveCPUProfile(ctx context.Context, k cluster.Choice, seconds int) <-chan struct{} {
	done := make(chan struct{})
	if b.profiles == "" {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		b.saveProfile(ctx, k, "profile", map[string]string{"seconds": strconv.Itoa(seconds)}, fmt.Sprintf("cpu-%s-burst.pb.gz", k))
	}()
	return done
}

// saveProfile reads /debug/pprof/<kind> of the node's kubelet through the
// API server's node proxy and writes it to file under -profiles.
func (b *bench) saveProfile(ctx context.Context, k cluster.Choice, kind string, params map[string]string, file string) {
	nodes, err := b.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) != 1 {
		b.log.Warn(kind+" profile: no single node", zap.Error(err))
		return
	}
	req := b.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", nodes.Items[0].Name, "proxy/debug/pprof/"+kind)
	for n, v := range params {
		req = req.Param(n, v)
	}
	data, err := req.DoRaw(ctx)
	if err != nil {
		b.log.Warn(kind+" profile", zap.String("kubelet", string(k)), zap.Error(err))
		return
	}
	path := filepath.Join(b.profiles, file)
	if err := os.MkdirAll(b.profiles, 0o755); err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		b.log.Warn(kind+" profile", zap.Error(err))
		return
	}
	b.log.Info(kind+" profile saved", zap.String("path", path))
}

// vmRSS reads the VmRSS line of a /proc/PID/status file.
func vmRSS(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(data))
}

func parseVmRSS(status string) (uint64, error) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("no VmRSS line")
}

func sleeperPod(name string) *v1.Pod {
	c := framework.BusyboxContainer("c", "trap 'exit 0' TERM; while true; do sleep 1; done")
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "kubelet-bench"}},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []v1.Container{c},
		},
	}
}

// runningWatch records when an informer first sees each Pod Running.
type runningWatch struct {
	mu      sync.Mutex
	seen    map[string]time.Time
	changed chan struct{}
}

func (b *bench) watchRunning(ctx context.Context, ns string) *runningWatch {
	w := &runningWatch{seen: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	lw := cache.NewListWatchFromClient(b.client.CoreV1().RESTClient(), "pods", ns, fields.Everything())
	inf := cache.NewSharedIndexInformer(lw, &v1.Pod{}, 0, cache.Indexers{})
	record := func(obj any) {
		p, ok := obj.(*v1.Pod)
		if !ok || p.Status.Phase != v1.PodRunning {
			return
		}
		now := time.Now()
		w.mu.Lock()
		if _, done := w.seen[p.Name]; !done {
			w.seen[p.Name] = now
		}
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    record,
		UpdateFunc: func(_, obj any) { record(obj) },
	})
	go inf.Run(ctx.Done())
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	return w
}

// wait blocks until every name was seen Running and returns when each was.
func (w *runningWatch) wait(ctx context.Context, names []string) (map[string]time.Time, error) {
	deadline := time.After(podTimeout)
	for {
		w.mu.Lock()
		out := map[string]time.Time{}
		for _, n := range names {
			if t, ok := w.seen[n]; ok {
				out[n] = t
			}
		}
		w.mu.Unlock()
		if len(out) == len(names) {
			return out, nil
		}
		select {
		case <-w.changed:
		case <-deadline:
			return nil, fmt.Errorf("%d of %d Pods Running after %s", len(out), len(names), podTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// measure swaps kubelet k in and takes its figures in a namespace of its own.
func (b *bench) measure(ctx context.Context, k cluster.Choice) (result, error) {
	r := result{kubelet: k}
	b.log.Info("measuring", zap.String("kubelet", string(k)))
	if err := b.swap(ctx, k); err != nil {
		return r, err
	}
	ns, err := b.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "kubelet-bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return r, err
	}
	defer func() {
		_ = b.client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	}()
	if err := b.waitServiceAccount(ctx, ns.Name); err != nil {
		return r, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := b.watchRunning(wctx, ns.Name)
	pods := b.client.CoreV1().Pods(ns.Name)

	// Warm-up, not measured: the image is then present for every Pod.
	if _, err := b.start(ctx, w, pods.Create, []string{"warmup"}); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	if err := b.deleteAll(ctx, ns.Name); err != nil {
		return r, err
	}
	time.Sleep(b.settle)
	if r.idleRSS, err = b.kubeletRSS(); err != nil {
		return r, err
	}
	b.saveHeap(ctx, k, "idle")
	for i := range b.single {
		lat, err := b.start(ctx, w, pods.Create, []string{fmt.Sprintf("single-%02d", i)})
		if err != nil {
			return r, fmt.Errorf("single Pod %d: %w", i, err)
		}
		r.single = append(r.single, lat...)
		if err := b.deleteAll(ctx, ns.Name); err != nil {
			return r, err
		}
	}
	var names []string
	for i := range b.burst {
		names = append(names, fmt.Sprintf("burst-%02d", i))
	}
	cpu0, err := b.kubeletCPU()
	if err != nil {
		return r, err
	}
	calls0 := b.takeCalls(ctx)
	profDone := b.saveCPUProfile(ctx, k, 15)
	defer func() { <-profDone }()
	all0, err := takeCPU()
	if err != nil {
		return r, err
	}
	if r.burst, err = b.start(ctx, w, pods.Create, names); err != nil {
		return r, fmt.Errorf("burst: %w", err)
	}
	all1, err := takeCPU()
	if err != nil {
		return r, err
	}
	clusterPIDs, err := b.clusterPIDs()
	if err != nil {
		return r, err
	}
	bc := cpuBetween(all0, all1, clusterPIDs)
	bc.calls = perPod(calls0, b.takeCalls(ctx), len(names))
	bc.p99 = percentile(r.burst, 99)
	r.burstProcs = []burstCPU{bc}
	cpu1, err := b.kubeletCPU()
	if err != nil {
		return r, err
	}
	r.burstCPU = cpu1 - cpu0
	time.Sleep(b.settle)
	if r.podRSS, err = b.kubeletRSS(); err != nil {
		return r, err
	}
	b.saveHeap(ctx, k, "pods")
	if err := b.deleteAll(ctx, ns.Name); err != nil {
		return r, err
	}
	return r, nil
}

type createFunc func(context.Context, *v1.Pod, metav1.CreateOptions) (*v1.Pod, error)

// start creates the named Pods at once and returns each one's latency from
// just before its create call to the watch seeing it Running.
func (b *bench) start(ctx context.Context, w *runningWatch, create createFunc, names []string) ([]time.Duration, error) {
	created := make([]time.Time, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i] = time.Now()
			_, errs[i] = create(ctx, sleeperPod(n), metav1.CreateOptions{})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	seen, err := w.wait(ctx, names)
	if err != nil {
		return nil, err
	}
	out := make([]time.Duration, len(names))
	for i, n := range names {
		out[i] = seen[n].Sub(created[i])
	}
	return out, nil
}

func (b *bench) deleteAll(ctx context.Context, ns string) error {
	pods := b.client.CoreV1().Pods(ns)
	if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		return len(l.Items) == 0, nil
	})
}

func (b *bench) waitServiceAccount(ctx context.Context, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := b.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// percentile is the nearest-rank percentile p (0-100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(p/100*float64(len(s)) + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

func ratio(ours, up float64) string {
	if up == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", ours/up)
}

// report prints both kubelets' figures and ours/upstream.
func report(out io.Writer, up, ours result, single, burst, rounds int) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
	mib := func(b uint64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
	row := func(name string, u, o float64, f func(float64) string, goal string) {
		fmt.Fprintf(out, "%-28s %12s %12s %10s  %s\n", name, f(u), f(o), ratio(o, u), goal)
	}
	d := func(v float64) string { return ms(time.Duration(v)) }
	m := func(v float64) string { return mib(uint64(v)) }
	fmt.Fprintf(out, "\nkubelet bench: Pod start (create -> Running seen by a watch, image present) and kubelet RSS\n")
	fmt.Fprintf(out, "%d round(s), upstream and ours alternating (ABBA); latencies pooled, RSS the median of the rounds\n", rounds)
	fmt.Fprintf(out, "%-28s %12s %12s %10s  %s\n", "", "upstream", "ours", "ours/up", "goal")
	single, burst = len(ours.single), len(ours.burst)
	row(fmt.Sprintf("single p50 (n=%d)", single), float64(percentile(up.single, 50)), float64(percentile(ours.single, 50)), d, "")
	row(fmt.Sprintf("single p99 (n=%d)", single), float64(percentile(up.single, 99)), float64(percentile(ours.single, 99)), d, "<= 0.70x")
	row(fmt.Sprintf("burst p50 (n=%d)", burst), float64(percentile(up.burst, 50)), float64(percentile(ours.burst, 50)), d, "")
	row(fmt.Sprintf("burst p99 (n=%d)", burst), float64(percentile(up.burst, 99)), float64(percentile(ours.burst, 99)), d, "<= 0.70x")
	row(fmt.Sprintf("burst max (n=%d)", burst), float64(percentile(up.burst, 100)), float64(percentile(ours.burst, 100)), d, "")
	row(fmt.Sprintf("kubelet CPU per burst (%d Pods)", burst/rounds), float64(up.burstCPU), float64(ours.burstCPU), d, "")
	row("RSS idle", float64(up.idleRSS), float64(ours.idleRSS), m, "<= 0.50x")
	row(fmt.Sprintf("RSS with %d Pods", burst/rounds), float64(up.podRSS), float64(ours.podRSS), m, "<= 0.50x")
	fmt.Fprintln(out)
	for i := range max(len(up.burstProcs), len(ours.burstProcs)) {
		if i < len(up.burstProcs) {
			up.burstProcs[i].print(out, fmt.Sprintf("round %d upstream", i+1), 10)
		}
		if i < len(ours.burstProcs) {
			ours.burstProcs[i].print(out, fmt.Sprintf("round %d ours", i+1), 10)
		}
	}
}
