package main

import (
	"bufio"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	pipvs "github.com/nodesuite/nodesuite/proxy/internal/ipvs"
)

// destReader reads one virtual server's real servers (pipvs.Reader: one
// GET_DEST dump; a fake in tests).
type destReader interface {
	RealServers(pipvs.VSKey) ([]pipvs.RealServer, error)
}

// Hints that trigger a verification pass (obsStats.HintBy).
const (
	hintSample = "sample" // a random sample of pending Services was complete
	hintMetric = "metric" // the proxy's metric says its first sync finished
	hintFew    = "few"    // so few pending that a pass is cheap anyway
)

// obsStats is what the observer reports (durations from the proxy's start).
type obsStats struct {
	Pending              int
	Polls, Passes, Reads int
	HintBy               string
	HintAt               time.Duration // the first pass's start
	MetricSeen           bool
	MetricAt             time.Duration // when the proxy's metric was first seen set
	Last, Slowest        time.Duration // the last and the longest poll
}

// observer decides when the kernel holds every expected virtual server with
// exactly its expected real servers, at a cost of O(pending) and without
// redoing work: in a full sync the proxies only add, so a Service verified
// complete is never read again. Until a cheap hint (a random sample of
// pending Services all complete, or the proxy's own "synced" metric, or few
// left) a poll reads only the sample; a hint arms a verification pass, a
// GET_DEST per pending Service. Completion is the end of the pass that
// leaves nothing pending: kernel-verified, so an upper bound on the true
// completion (the lag is at most the pause before the pass plus the pass).
type observer struct {
	r      destReader
	synced func() bool // the proxy's metric; nil: none
	few    int         // at most this many pending: pass without a hint
	sample int
	start  time.Time
	now    func() time.Time

	want  map[pipvs.VSKey]map[netip.AddrPort]bool // the pending Services
	order []pipvs.VSKey                           // pending (and some verified since the last pass), in random order
	next  int                                     // the sample's cursor in order
	armed bool                                    // the next poll is a pass
	stats obsStats
}

func newObserver(r destReader, targets []target, synced func() bool, rnd *rand.Rand, start time.Time) *observer {
	o := &observer{r: r, synced: synced, few: perKeyMax, sample: sample, start: start, now: time.Now,
		want: make(map[pipvs.VSKey]map[netip.AddrPort]bool, len(targets)), order: make([]pipvs.VSKey, 0, len(targets))}
	for _, t := range targets {
		o.want[t.vs] = t.want
		o.order = append(o.order, t.vs)
	}
	if rnd != nil {
		// The sample walks a random permutation: spread over the table
		// whatever order a proxy programs it in.
		rnd.Shuffle(len(o.order), func(i, j int) { o.order[i], o.order[j] = o.order[j], o.order[i] })
	}
	o.stats.Pending = len(o.want)
	return o
}

// checkMetric says whether the proxy's metric has been seen set.
func (o *observer) checkMetric() bool {
	if !o.stats.MetricSeen && o.synced != nil && o.synced() {
		o.stats.MetricSeen, o.stats.MetricAt = true, o.now().Sub(o.start)
	}
	return o.stats.MetricSeen
}

func (o *observer) poll() error {
	t0 := o.now()
	defer func() {
		o.stats.Polls++
		o.stats.Pending = len(o.want)
		o.stats.Last = o.now().Sub(t0)
		o.stats.Slowest = max(o.stats.Slowest, o.stats.Last)
	}()
	if !o.armed {
		switch {
		case o.checkMetric():
			o.arm(hintMetric, t0)
		case len(o.want) <= o.few:
			o.arm(hintFew, t0)
		default:
			done, err := o.sampleDone()
			if err != nil || !done {
				return err
			}
			o.arm(hintSample, t0)
		}
	}
	if err := o.pass(); err != nil {
		return err
	}
	// A sample can be complete long before the rest: back to sampling
	// rather than a pass over thousands per poll while the proxy works.
	if len(o.want) > o.few && !o.checkMetric() {
		o.armed = false
	}
	return nil
}

func (o *observer) arm(by string, t0 time.Time) {
	o.armed = true
	if o.stats.HintBy == "" {
		o.stats.HintBy, o.stats.HintAt = by, t0.Sub(o.start)
	}
}

// sampleDone reads up to o.sample pending Services from the cursor on and
// says whether all were complete (it stops at the first that is not).
func (o *observer) sampleDone() (bool, error) {
	for n := 0; n < o.sample && len(o.want) > 0; {
		if o.next >= len(o.order) {
			o.next = 0
		}
		k := o.order[o.next]
		o.next++
		if _, ok := o.want[k]; !ok {
			continue // verified by an earlier sample
		}
		n++
		done, err := o.readOne(k)
		if err != nil || !done {
			return false, err
		}
	}
	return true, nil
}

// pass reads every pending Service once and leaves order holding only
// those still pending.
func (o *observer) pass() error {
	o.stats.Passes++
	left := o.order[:0]
	for i, k := range o.order {
		if _, ok := o.want[k]; !ok {
			continue
		}
		done, err := o.readOne(k)
		if err != nil {
			left = append(left, o.order[i:]...)
			o.order, o.next = left, 0
			return err
		}
		if !done {
			left = append(left, k)
		}
	}
	o.order, o.next = left, 0
	return nil
}

// readOne reads k's real servers and says whether k is complete (then no
// longer pending).
func (o *observer) readOne(k pipvs.VSKey) (bool, error) {
	o.stats.Reads++
	rs, err := o.r.RealServers(k)
	if errors.Is(err, pipvs.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !exactly(rs, o.want[k]) {
		return false, nil
	}
	delete(o.want, k)
	return true, nil
}

// watchSynced polls the proxy's kubeproxy_sync_proxy_rules_last_timestamp_seconds
// every gap from start on until it is set (both proxies set it at the end
// of each sync, the first only once their caches are synced; its /metrics
// page costs the proxy CPU too, hence the gap) or ctx ends, and says when it
// first saw it set, since start (0: not yet). A line scan of the text
// format: ours has no label, kube-proxy an ip_family one.
func watchSynced(ctx context.Context, url string, start time.Time, gap time.Duration) func() time.Duration {
	var at atomic.Int64
	go func() {
		// kube-proxy's page can take seconds in a loaded guest.
		c := http.Client{Timeout: 10 * time.Second}
		for t := time.NewTicker(gap); ; {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if metricSet(&c, url) {
				at.Store(int64(max(time.Since(start), 1)))
				t.Stop()
				return
			}
		}
	}()
	return func() time.Duration { return time.Duration(at.Load()) }
}

func metricSet(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	const name = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name) || len(l) == len(name) || (l[len(name)] != ' ' && l[len(name)] != '{') {
			continue
		}
		f := strings.Fields(l[strings.LastIndexAny(l, "} ")+1:])
		if len(f) == 1 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil && v > 0 {
				return true
			}
		}
	}
	return false
}
