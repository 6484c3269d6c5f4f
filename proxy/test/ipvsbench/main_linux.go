// Command ipvsbench is the guest side of make bench-proxy-ipvs: inside a
// user-mode-linux kernel it starts one proxy (ours or upstream kube-proxy in
// IPVS mode) against the API server the host side populated, and measures
// from the kernel's side (one virtual server's real servers at a time over
// IPVS's netlink API; the proxy's own metric only hints when to look):
//   - full sync: from the proxy's start until every Service of namespace
//     bench has its virtual server with exactly its real servers (observer);
//   - one EndpointSlice change: from the API write (and from its answer)
//     until the new real server is in the kernel, one change at a time;
//   - the proxy's RSS (VmRSS after the full sync, VmHWM at the end).
//
// It prints one line "RESULT <json>" for the host side (e2e/bench/proxy-ipvs).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	pipvs "github.com/nodesuite/nodesuite/proxy/internal/ipvs"
)

// Result is what the host side prints.
type Result struct {
	Proxy    string `json:"proxy"`
	Services int    `json:"services"`
	// FullSyncSeconds is 0 when the sync did not finish within the
	// timeout; Done then says how many Services were complete.
	FullSyncSeconds float64   `json:"fullSyncSeconds"`
	Done            int       `json:"done"`
	ChangeMs        []float64 `json:"changeMs"`    // from the start of the API write
	ChangeAckMs     []float64 `json:"changeAckMs"` // from the API server's answer
	// ChangesMissed counts changes not in the kernel after -change-timeout
	// (left out of ChangeMs: a lost update, or one queued behind a sync
	// longer than the bound).
	ChangesMissed int `json:"changesMissed"`
	// The observer (see observer): when a hint first armed a
	// verification pass (HintBy: sample, metric or few), when the proxy's
	// own synced metric was first seen set (read every 0.5 s until the end
	// of the run, changes included; 0: never), the observer's longest poll,
	// and its CPU, polls, passes and GET_DEST reads until completion.
	HintBy             string  `json:"hintBy"`
	HintSeconds        float64 `json:"hintSeconds"`
	MetricSeconds      float64 `json:"metricSeconds"`
	SlowestPollSeconds float64 `json:"slowestPollSeconds"`
	ObserverCPUSeconds float64 `json:"observerCPUSeconds"`
	ObserverPolls      int     `json:"observerPolls"`
	ObserverPasses     int     `json:"observerPasses"`
	ObserverReads      int     `json:"observerReads"`
	RSSKiB             int     `json:"rssKiB"`
	HWMKiB             int     `json:"hwmKiB"`
	Error              string  `json:"error,omitempty"`
}

const namespace = "bench"

var (
	profileSeconds int
	changeTimeout  time.Duration
)

func main() {
	kind := flag.String("proxy", "ours", "ours or upstream")
	bin := flag.String("bin", "", "the proxy binary")
	node := flag.String("node", "uml-bench", "the Node's name (--hostname-override)")
	changes := flag.Int("changes", 0, "EndpointSlice changes to time after the full sync")
	timeout := flag.Duration("timeout", 5*time.Minute, "bound on the full sync")
	logPath := flag.String("log", "/dev/null", "the proxy's log")
	flag.DurationVar(&changeTimeout, "change-timeout", 5*time.Minute, "bound on one change reaching the kernel")
	flag.IntVar(&profileSeconds, "profile-seconds", 0, "ours only: take a CPU profile of this many seconds from the start (to LOG.pprof)")
	flag.Parse()
	r := Result{Proxy: *kind}
	if err := run(&r, *kind, *bin, *node, *changes, *timeout, *logPath); err != nil {
		r.Error = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", b)
}

type target struct {
	slice *discoveryv1.EndpointSlice
	vs    pipvs.VSKey
	// want is the real servers the virtual server must have, exactly.
	want map[netip.AddrPort]bool
}

func run(r *Result, kind, bin, node string, changes int, timeout time.Duration, logPath string) error {
	ctx := context.Background()
	kubeconfig := os.Getenv("NODESUITE_UML_KUBECONFIG")
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// What the kernel must end up with, read before the proxy starts.
	svcs, err := client.CoreV1().Services(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	slices, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	bySvc := map[string]*discoveryv1.EndpointSlice{}
	for i := range slices.Items {
		bySvc[slices.Items[i].Labels[discoveryv1.LabelServiceName]] = &slices.Items[i]
	}
	var targets []target
	for _, s := range svcs.Items {
		sl := bySvc[s.Name]
		if sl == nil || len(s.Spec.Ports) != 1 {
			return fmt.Errorf("service %s: want one port and one EndpointSlice", s.Name)
		}
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || len(sl.Ports) != 1 || sl.Ports[0].Port == nil {
			return fmt.Errorf("service %s: want a ClusterIP and one EndpointSlice port", s.Name)
		}
		want := map[netip.AddrPort]bool{}
		for _, e := range sl.Endpoints {
			for _, a := range e.Addresses {
				want[netip.AddrPortFrom(netip.MustParseAddr(a), uint16(*sl.Ports[0].Port))] = true
			}
		}
		targets = append(targets, target{slice: sl, want: want,
			vs: pipvs.VSKey{Protocol: v1.ProtocolTCP, Addr: ip, Port: uint16(s.Spec.Ports[0].Port)}})
	}
	r.Services = len(targets)
	sort.Slice(targets, func(i, j int) bool { return targets[i].slice.Name < targets[j].slice.Name })

	args := []string{"--kubeconfig=" + kubeconfig, "--proxy-mode=ipvs", "--hostname-override=" + node,
		"--cluster-cidr=10.244.0.0/16", "--ipvs-sync-period=30s", "--ipvs-min-sync-period=0s"}
	if kind == "upstream" {
		// Leave the conntrack table size alone (UML cannot resize its hash).
		args = append(args, "--conntrack-max-per-core=0")
	}
	if kind == "ours" && profileSeconds > 0 {
		args = append(args, "--profiling")
		go profile(logPath+".pprof", profileSeconds)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()

	rd, err := pipvs.NewReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	syncedAt := watchSynced(wctx, "http://127.0.0.1:10249/metrics", start, 500*time.Millisecond)
	// When the proxy says it is done, in case it says so only after the
	// changes began (kube-proxy's sync goes on after IPVS is programmed).
	defer func() { r.MetricSeconds = syncedAt().Seconds() }()
	obs := newObserver(rd, targets, func() bool { return syncedAt() > 0 },
		rand.New(rand.NewPCG(uint64(start.UnixNano()), 1)), start)
	cpu0 := cpuSeconds()
	for len(obs.want) > 0 {
		select {
		case err := <-exited:
			return fmt.Errorf("proxy exited: %v", err)
		default:
		}
		if time.Since(start) > timeout {
			r.Done = len(targets) - len(obs.want)
			return fmt.Errorf("full sync not done after %s: %d of %d Services complete", timeout, r.Done, len(targets))
		}
		if err := obs.poll(); err != nil {
			return err
		}
		if len(obs.want) == 0 {
			break
		}
		// Armed: the next pass soon. Not armed: never more than half the
		// guest's CPU, unless the proxy says it is done.
		pause := time.Now().Add(pollInterval)
		if !obs.armed {
			pause = time.Now().Add(max(pollInterval, obs.stats.Last))
		}
		time.Sleep(pollInterval)
		for time.Now().Before(pause) && !obs.checkMetric() {
			time.Sleep(pollInterval)
		}
	}
	r.FullSyncSeconds = time.Since(start).Seconds()
	r.ObserverCPUSeconds = cpuSeconds() - cpu0
	st := obs.stats
	r.HintBy, r.HintSeconds, r.SlowestPollSeconds = st.HintBy, st.HintAt.Seconds(), st.Slowest.Seconds()
	r.ObserverPolls, r.ObserverPasses, r.ObserverReads = st.Polls, st.Passes, st.Reads
	r.Done = len(targets)
	r.RSSKiB, _ = status(cmd.Process.Pid)
	// Both proxies serve kube-proxy's metrics there: the sync durations
	// they report themselves go beside the log, for reading, not for the table.
	saveMetrics(logPath + ".metrics")

	if kind == "ours" && profileSeconds > 0 && changes > 0 {
		// A second profile covers the changes (the first, the full sync):
		// about as long as they take (~250 ms each), and the proxy is not
		// stopped before it is written.
		done := make(chan struct{})
		go func() {
			defer close(done)
			profile(logPath+".changes.pprof", max(5, changes/4))
		}()
		defer func() {
			select {
			case <-done:
			case <-time.After(time.Duration(max(5, changes/4)+30) * time.Second):
			}
		}()
	}
	for i := 0; i < changes && len(targets) > 0; i++ {
		t := &targets[(i*7919)%len(targets)]
		sl := t.slice.DeepCopy()
		ip := netip.AddrFrom4([4]byte{10, 250, byte(i / 250), byte(1 + i%250)})
		sl.Endpoints[0].Addresses = []string{ip.String()}
		port := uint16(*sl.Ports[0].Port)
		t0 := time.Now()
		upd, err := client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		tAck := time.Now()
		t.slice = upd
		missed := false
		for !hasDest(rd, t.vs, netip.AddrPortFrom(ip, port)) {
			if time.Since(t0) > changeTimeout {
				fmt.Fprintf(os.Stderr, "change %d (%s of %s) not in the kernel after %s\n", i, ip, t.vs, changeTimeout)
				missed = true
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if missed {
			r.ChangesMissed++
			continue
		}
		now := time.Now()
		r.ChangeMs = append(r.ChangeMs, float64(now.Sub(t0).Microseconds())/1000)
		r.ChangeAckMs = append(r.ChangeAckMs, float64(now.Sub(tAck).Microseconds())/1000)
		time.Sleep(200 * time.Millisecond)
	}
	_, r.HWMKiB = status(cmd.Process.Pid)
	return nil
}

// profile fetches a CPU profile from the proxy's metrics server as soon as
// it answers.
func profile(path string, seconds int) {
	c := http.Client{Timeout: time.Duration(seconds+30) * time.Second}
	for i := 0; i < 100; i++ {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:10249/debug/pprof/profile?seconds=%d", seconds))
		if err == nil && resp.StatusCode != http.StatusOK {
			resp.Body.Close() // another profile still running
			err = fmt.Errorf("%s", resp.Status)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		_ = os.WriteFile(path, b, 0o644)
		return
	}
}

func saveMetrics(path string) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:10249/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "kubeproxy_sync_") || strings.HasPrefix(l, "kubeproxy_network_programming") ||
			strings.HasPrefix(l, "process_") || strings.HasPrefix(l, "go_memstats_heap") {
			b.WriteString(l + "\n")
		}
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o644)
}

// hasDest says whether vk has the real server ap (one GET_DEST dump).
func hasDest(r *pipvs.Reader, vk pipvs.VSKey, ap netip.AddrPort) bool {
	rs, err := r.RealServers(vk)
	if err != nil {
		return false
	}
	for _, d := range rs {
		if d.AddrPort() == ap {
			return true
		}
	}
	return false
}

// pollInterval is the observer's pause between two polls while it waits
// for a hint (after a long pass that left many pending, at least as long
// as that pass, cut short when the proxy's metric says it is done).
const pollInterval = 200 * time.Millisecond

// perKeyMax is the number of pending virtual servers up to which a poll is
// a verification pass without waiting for a hint (a GET_DEST round trip
// each, about 0.65 ms in user-mode-linux); sample is how many pending ones
// a poll reads before that.
const (
	perKeyMax = 256
	sample    = 8
)

// exactly says whether rs are the real servers want, no more, no fewer.
func exactly(rs []pipvs.RealServer, want map[netip.AddrPort]bool) bool {
	if len(rs) != len(want) {
		return false
	}
	for _, r := range rs {
		if !want[r.AddrPort()] {
			return false
		}
	}
	return true
}

// cpuSeconds is this process's CPU time so far (user + system): during the
// full sync the observer is all it runs.
func cpuSeconds() float64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// status reads VmRSS and VmHWM (KiB) of pid.
func status(pid int) (rss, hwm int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "VmHWM:":
			hwm = n
		}
	}
	return rss, hwm
}
