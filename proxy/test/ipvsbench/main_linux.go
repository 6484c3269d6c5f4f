// Command ipvsbench is the guest side of make bench-proxy-ipvs: inside a
// user-mode-linux kernel it starts one proxy (ours or upstream kube-proxy in
// IPVS mode) against the API server the host side populated, and measures
// from the kernel's side, through IPVS's netlink API (github.com/moby/ipvs,
// not the proxy's own metrics):
//   - full sync: from the proxy's start until every Service of namespace
//     bench has its virtual server with all its real servers;
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
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
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
	ChangesMissed   int     `json:"changesMissed"`
	LastPassSeconds float64 `json:"lastPassSeconds"`
	RSSKiB          int     `json:"rssKiB"`
	HWMKiB          int     `json:"hwmKiB"`
	Error           string  `json:"error,omitempty"`
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

type vsKey struct {
	addr string
	port uint16
}

type target struct {
	slice *discoveryv1.EndpointSlice
	vs    vsKey
	want  int
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
		targets = append(targets, target{slice: sl, vs: vsKey{s.Spec.ClusterIP, uint16(s.Spec.Ports[0].Port)}, want: len(sl.Endpoints)})
	}
	r.Services = len(targets)
	sort.Slice(targets, func(i, j int) bool { return targets[i].slice.Name < targets[j].slice.Name })

	h, err := ipvs.New("")
	if err != nil {
		return fmt.Errorf("ipvs netlink: %w", err)
	}
	defer h.Close()

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

	// Two phases keep the observer's own netlink traffic (which competes
	// with the proxy for UML's one CPU) small: one dump of the virtual
	// servers per second until all exist, then the real servers of each
	// not yet complete, one dump per virtual server, pass after pass. The
	// sync is done by the time the last one is seen complete: an upper
	// bound, late by at most one pass (LastPassSeconds).
	pending := map[vsKey]int{}
	for _, t := range targets {
		pending[t.vs] = t.want
	}
	check := func() error {
		select {
		case err := <-exited:
			return fmt.Errorf("proxy exited: %v", err)
		default:
		}
		if time.Since(start) > timeout {
			r.Done = len(targets) - len(pending)
			return fmt.Errorf("full sync not done after %s: %d of %d Services complete", timeout, r.Done, len(targets))
		}
		return nil
	}
	for {
		if err := check(); err != nil {
			return err
		}
		vss, err := h.GetServices()
		if err != nil {
			return fmt.Errorf("list virtual servers: %w", err)
		}
		n := 0
		for _, vs := range vss {
			if _, ok := pending[vsKey{vs.Address.String(), vs.Port}]; ok && vs.Protocol == syscall.IPPROTO_TCP {
				n++
			}
		}
		if n == len(pending) {
			break
		}
		time.Sleep(time.Second)
	}
	for len(pending) > 0 {
		if err := check(); err != nil {
			return err
		}
		pass := time.Now()
		for k, want := range pending {
			svc := &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP, Address: net.ParseIP(k.addr), Port: k.port}
			if ds, err := h.GetDestinations(svc); err == nil && len(ds) >= want {
				delete(pending, k)
			}
		}
		r.LastPassSeconds = time.Since(pass).Seconds()
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
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
		ip := net.IPv4(10, 250, byte(i/250), byte(1+i%250)).String()
		sl.Endpoints[0].Addresses = []string{ip}
		port := uint16(*sl.Ports[0].Port)
		t0 := time.Now()
		upd, err := client.DiscoveryV1().EndpointSlices(namespace).Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		tAck := time.Now()
		t.slice = upd
		svc := &ipvs.Service{AddressFamily: syscall.AF_INET, Protocol: syscall.IPPROTO_TCP,
			Address: net.ParseIP(t.vs.addr), Port: t.vs.port}
		missed := false
		for !hasDest(h, svc, ip, port) {
			if time.Since(t0) > changeTimeout {
				fmt.Fprintf(os.Stderr, "change %d (%s of %s) not in the kernel after %s\n", i, ip, t.vs.addr, changeTimeout)
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

func hasDest(h *ipvs.Handle, svc *ipvs.Service, ip string, port uint16) bool {
	ds, err := h.GetDestinations(svc)
	if err != nil {
		return false
	}
	for _, d := range ds {
		if d.Port == port && d.Address.String() == ip {
			return true
		}
	}
	return false
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
