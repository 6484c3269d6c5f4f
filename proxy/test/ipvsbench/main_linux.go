// Command ipvsbench is the guest side of make bench-proxy-ipvs: inside a
// user-mode-linux kernel it starts one proxy (ours or upstream kube-proxy in
// IPVS mode) against the API server the host side populated, and measures
// from the kernel's side (one virtual server's real servers over IPVS's
// netlink API, the whole table from /proc/net/ip_vs; never the proxy's own
// metrics):
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
	"errors"
	"flag"
	"fmt"
	"io"
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
	// SlowestPollSeconds is the observer's longest poll: the sync's end
	// is seen at most two polls and a pause (each no longer) after it
	// happened.
	SlowestPollSeconds float64 `json:"slowestPollSeconds"`
	// LastPassSeconds is the observer's last poll (its lag is at most
	// that plus one pause); ObserverCPUSeconds its CPU during the full
	// sync, over ObserverPolls polls and ObserverReads GET_DEST reads.
	LastPassSeconds    float64 `json:"lastPassSeconds"`
	ObserverCPUSeconds float64 `json:"observerCPUSeconds"`
	ObserverPolls      int     `json:"observerPolls"`
	ObserverReads      int     `json:"observerReads"`
	ObserverDumps      int     `json:"observerDumps"` // whole-table reads
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

	obs, err := newObserver(targets)
	if err != nil {
		return err
	}
	defer obs.close()
	cpu0 := cpuSeconds()
	for len(obs.pending) > 0 {
		select {
		case err := <-exited:
			return fmt.Errorf("proxy exited: %v", err)
		default:
		}
		if time.Since(start) > timeout {
			r.Done = len(targets) - len(obs.pending)
			return fmt.Errorf("full sync not done after %s: %d of %d Services complete", timeout, r.Done, len(targets))
		}
		if err := obs.poll(); err != nil {
			return err
		}
		if len(obs.pending) > 0 {
			time.Sleep(max(pollInterval, obs.last))
		}
	}
	r.ObserverCPUSeconds = cpuSeconds() - cpu0
	r.ObserverPolls, r.ObserverReads, r.ObserverDumps = obs.polls, obs.reads, obs.dumps
	r.LastPassSeconds, r.SlowestPollSeconds = obs.last.Seconds(), obs.slowest.Seconds()
	r.FullSyncSeconds = time.Since(start).Seconds()
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
		for !hasDest(obs.r, t.vs, netip.AddrPortFrom(ip, port)) {
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

// pollInterval is the observer's shortest pause between two polls (it
// waits at least as long as the last poll took, so it never takes more
// than half the guest's one CPU).
const pollInterval = 200 * time.Millisecond

// perKeyMax is the number of incomplete virtual servers up to which a poll
// reads each one's real servers (a GET_DEST round trip each, about 0.5 ms
// in user-mode-linux); above it a poll first reads a few at random
// (sample), and only when all of those are complete the whole table
// (/proc/net/ip_vs: one text dump of every virtual and real server, far
// cheaper than 10,000 round trips).
const (
	perKeyMax = 256
	sample    = 8
)

// observer decides when the kernel's IPVS table holds every expected
// virtual server with exactly its expected real servers. The same for both
// proxies, and light: a virtual server found complete is never read again;
// while many are incomplete a poll costs a few round trips, and the whole
// table is read only when a sample says the sync may be done; the sync's
// end is noticed by the first poll after it (lag <= the pause + one poll).
type observer struct {
	r       *pipvs.Reader
	pending map[pipvs.VSKey]map[netip.AddrPort]bool
	polls   int
	reads   int           // GET_DEST round trips
	dumps   int           // whole-table reads
	last    time.Duration // the last poll's length
	slowest time.Duration // the longest poll's
}

func newObserver(targets []target) (*observer, error) {
	r, err := pipvs.NewReader()
	if err != nil {
		return nil, err
	}
	o := &observer{r: r, pending: make(map[pipvs.VSKey]map[netip.AddrPort]bool, len(targets))}
	for _, t := range targets {
		o.pending[t.vs] = t.want
	}
	return o, nil
}

func (o *observer) close() { o.r.Close() }

func (o *observer) poll() error {
	t0 := time.Now()
	defer func() { o.polls++; o.last = time.Since(t0); o.slowest = max(o.slowest, o.last) }()
	if len(o.pending) > perKeyMax {
		n := 0
		for k := range o.pending { // map order: a random sample
			if n++; n > sample {
				break
			}
			done, err := o.readOne(k)
			if err != nil || !done {
				return err
			}
		}
		return o.readAll()
	}
	for k := range o.pending {
		if _, err := o.readOne(k); err != nil {
			return err
		}
	}
	return nil
}

// readOne reads k's real servers and says whether k is complete (then no
// longer pending).
func (o *observer) readOne(k pipvs.VSKey) (bool, error) {
	o.reads++
	rs, err := o.r.RealServers(k)
	if errors.Is(err, pipvs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !exactly(rs, o.pending[k]) {
		return false, nil
	}
	delete(o.pending, k)
	return true, nil
}

// readAll reads the whole table and drops every complete virtual server.
func (o *observer) readAll() error {
	o.dumps++
	f, err := os.Open("/proc/net/ip_vs")
	if err != nil {
		return err
	}
	defer f.Close()
	table, err := parseProcIPVS(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("/proc/net/ip_vs: %w", err)
	}
	for k, want := range o.pending {
		if rs, ok := table[k]; ok && exactlyAPs(rs, want) {
			delete(o.pending, k)
		}
	}
	return nil
}

// parseProcIPVS reads /proc/net/ip_vs (net/netfilter/ipvs/ip_vs_ctl.c,
// ip_vs_info_seq_show): a virtual server line "TCP  0A600001:0050 rr ..."
// (addresses and ports in hex; IPv6 as [x:x:...]), then its real servers
// "  -> 0AF40002:1F90      Masq    1      0          0". Firewall-mark
// services (FWM) are skipped.
func parseProcIPVS(r io.Reader) (map[pipvs.VSKey][]netip.AddrPort, error) {
	out := map[pipvs.VSKey][]netip.AddrPort{}
	var cur *pipvs.VSKey
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && f[0] == "->":
			if cur == nil {
				continue // the header's "-> RemoteAddress:Port ..."
			}
			ap, err := parseHexAddrPort(f[1])
			if err != nil {
				return nil, err
			}
			out[*cur] = append(out[*cur], ap)
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			ap, err := parseHexAddrPort(f[1])
			if err != nil {
				return nil, err
			}
			k := pipvs.VSKey{Protocol: v1.Protocol(f[0]), Addr: ap.Addr(), Port: ap.Port()}
			out[k] = []netip.AddrPort{} // present, even with no real server
			cur = &k
		default:
			cur = nil // header lines, FWM services
		}
	}
	return out, sc.Err()
}

// parseHexAddrPort reads "0A600001:0050" or "[fd00:0000:...:0010]:0050".
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q: %w", s, err)
	}
	a := s[:i]
	if strings.HasPrefix(a, "[") {
		ip, err := netip.ParseAddr(strings.Trim(a, "[]"))
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address %q: %w", s, err)
		}
		return netip.AddrPortFrom(ip, uint16(port)), nil
	}
	v, err := strconv.ParseUint(a, 16, 32)
	if err != nil || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), uint16(port)), nil
}

// exactlyAPs is exactly for addresses read from /proc/net/ip_vs.
func exactlyAPs(aps []netip.AddrPort, want map[netip.AddrPort]bool) bool {
	if len(aps) != len(want) {
		return false
	}
	for _, ap := range aps {
		if !want[ap] {
			return false
		}
	}
	return true
}

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
