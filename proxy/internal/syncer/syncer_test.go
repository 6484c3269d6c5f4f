package syncer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/proxy/internal/health"
	ss "github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

type call struct {
	Full    bool
	Changed []string
	Eps     map[string]int
}

type recPlane struct {
	mu    sync.Mutex
	calls []call
	ch    chan struct{}
}

func (p *recPlane) Name() string { return "rec" }
func (p *recPlane) Sync(_ context.Context, st *ss.State, changed sets.Set[ss.Key], full bool) error {
	c := call{Full: full, Eps: map[string]int{}}
	for k := range changed {
		c.Changed = append(c.Changed, k.Name.Name+"/"+k.Name.Port)
	}
	for k, e := range st.Endpoints {
		c.Eps[k.Name.Name] = len(e)
	}
	p.mu.Lock()
	p.calls = append(p.calls, c)
	p.mu.Unlock()
	p.ch <- struct{}{}
	return nil
}

func service(name string, labels map[string]string) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: labels},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP, ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"},
			Ports: []v1.ServicePort{{Name: "http", Port: 80, Protocol: v1.ProtocolTCP}}}}
}

func slice(name, svc string, trigger time.Time, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name,
		Labels:      map[string]string{discoveryv1.LabelServiceName: svc},
		Annotations: map[string]string{v1.EndpointsLastChangeTriggerTime: trigger.Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(v1.ProtocolTCP)}}}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return s
}

func TestSyncerIncremental(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		service("web", nil), slice("web-1", "web", time.Now(), "10.244.0.2"),
		service("db", nil), slice("db-1", "db", time.Now(), "10.244.0.3"),
		// Another proxy's Service is not ours.
		service("other", map[string]string{labelServiceProxyName: "other"}),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	plane := &recPlane{ch: make(chan struct{}, 10)}
	reg := prometheus.NewRegistry()
	hs := health.New(time.Minute, nil, nil)
	s, err := New(client, plane, Options{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol},
		SyncPeriod: time.Hour, ConfigSyncPeriod: time.Hour, Registry: reg, Health: hs})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// A change can be handed over twice when its informer event races the
	// runner's rate-limit window; a repeat of the previous call is harmless
	// (the data plane's Sync is idempotent), so wait past it.
	var prev *call
	wait := func() call {
		t.Helper()
		for {
			select {
			case <-plane.ch:
			case <-time.After(20 * time.Second):
				t.Fatal("no sync")
			}
			plane.mu.Lock()
			c := plane.calls[len(plane.calls)-1]
			plane.mu.Unlock()
			sortStrings(c.Changed)
			if prev != nil && cmp.Equal(*prev, c) {
				continue
			}
			prev = &c
			return c
		}
	}
	if d := cmp.Diff(call{Full: true, Changed: []string{"db/http", "web/http"}, Eps: map[string]int{"web": 1, "db": 1}}, wait()); d != "" {
		t.Errorf("first sync (-want +got):\n%s", d)
	}
	// One slice changes: only its Service is handed over.
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx,
		slice("web-1", "web", time.Now().Add(-2*time.Second), "10.244.0.2", "10.244.0.4"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(call{Changed: []string{"web/http"}, Eps: map[string]int{"web": 2, "db": 1}}, wait()); d != "" {
		t.Errorf("slice update (-want +got):\n%s", d)
	}
	if n := testutil.CollectAndCount(reg, "kubeproxy_network_programming_duration_seconds"); n != 1 {
		t.Errorf("network programming histogram series: %d", n)
	}
	// Service deleted: its key is the change.
	if err := client.CoreV1().Services("ns").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(call{Changed: []string{"db/http"}, Eps: map[string]int{"web": 2}}, wait()); d != "" {
		t.Errorf("service delete (-want +got):\n%s", d)
	}
	if got := testutil.ToFloat64(s.m.services); got != 1 {
		t.Errorf("service_ports gauge = %v", got)
	}
	if got := testutil.ToFloat64(s.m.endpoints); got != 2 {
		t.Errorf("endpoints gauge = %v, want web's 2", got)
	}
	if !hs.Health().Healthy {
		t.Errorf("health after sync: %+v", hs.Health())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestRunnerRateLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var runs []time.Time
	r := NewRunner(func() { mu.Lock(); runs = append(runs, time.Now()); mu.Unlock() }, 200*time.Millisecond, time.Hour)
	go r.Run(ctx)
	start := time.Now()
	for i := 0; i < 20; i++ {
		r.Trigger()
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	// Triggers coalesce: at most one run per minInterval (plus the first).
	if limit := int(time.Since(start)/(200*time.Millisecond)) + 1; len(runs) < 2 || len(runs) > limit {
		t.Fatalf("%d runs for 20 triggers, want 2-%d", len(runs), limit)
	}
	for i := 1; i < len(runs); i++ {
		if gap := runs[i].Sub(runs[i-1]); gap < 200*time.Millisecond {
			t.Errorf("runs %d and %d only %s apart", i-1, i, gap)
		}
	}
}

// bgPlane reconciles in the background: each round applies one part.
type bgPlane struct {
	recPlane
	rounds chan int // Services in the state each part saw
}

func (p *bgPlane) Reconcile(ctx context.Context, pace ss.Pacer) error {
	if err := pace.Quiet(ctx); err != nil {
		return err
	}
	return pace.Apply(func(st *ss.State) error {
		select {
		case p.rounds <- len(st.Services):
		default:
		}
		return nil
	})
}

// With a background reconciler the periodic sync is not full: Reconcile
// runs every SyncPeriod and its parts run on the sync loop even while the
// loop waits out minSyncPeriod (they are not syncs).
func TestSyncerBackgroundReconcile(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(service("web", nil), slice("web-1", "web", time.Now(), "10.244.0.2"),
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	plane := &bgPlane{recPlane: recPlane{ch: make(chan struct{}, 100)}, rounds: make(chan int, 10)}
	s, err := New(client, plane, Options{NodeName: "n1", Families: []v1.IPFamily{v1.IPv4Protocol},
		MinSyncPeriod: time.Hour, SyncPeriod: 50 * time.Millisecond, ConfigSyncPeriod: time.Hour, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	for i := 0; i < 3; i++ {
		select {
		case n := <-plane.rounds:
			if n != 1 {
				t.Errorf("reconcile part saw %d Services, want 1", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("reconcile round %d never applied", i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	plane.mu.Lock()
	defer plane.mu.Unlock()
	if want := []call{{Full: true, Changed: []string{"web/http"}, Eps: map[string]int{"web": 1}}}; !cmp.Equal(want, plane.calls) {
		t.Errorf("syncs (-want +got):\n%s", cmp.Diff(want, plane.calls))
	}
}

// Work handed to the runner while a change is pending runs after the sync.
func TestRunnerSyncsBeforeHeldWork(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var order []string
	syncing := make(chan struct{})
	release := make(chan struct{})
	first := true
	r := NewRunner(func() {
		mu.Lock()
		order = append(order, "sync")
		f := first
		first = false
		mu.Unlock()
		if f {
			close(syncing)
			<-release
		}
	}, 0, time.Hour)
	go r.Run(ctx)
	<-syncing // the first sync runs; a change and then work arrive meanwhile
	r.Trigger()
	done := make(chan struct{})
	go func() {
		r.Do(ctx, func() { mu.Lock(); order = append(order, "work"); mu.Unlock(); close(done) })
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("work never ran")
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff([]string{"sync", "sync", "work"}, order); d != "" {
		t.Errorf("order (-want +got):\n%s", d)
	}
}

// A background reconcile's part waits while a change is pending or a sync
// runs (its reads would slow the change's sync), but not for a change that
// minSyncPeriod holds back on purpose.
func TestReconcileWaitsForChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(fake.NewClientset(), &recPlane{ch: make(chan struct{}, 1)}, Options{NodeName: "n1",
		Families: []v1.IPFamily{v1.IPv4Protocol}, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	s.needFull = false
	waits := func() bool {
		c, stop := context.WithTimeout(ctx, 100*time.Millisecond)
		defer stop()
		return s.waitNoChange(c) != nil
	}
	for _, tc := range []struct {
		name      string
		set       func()
		wantWaits bool
	}{
		{name: "nothing pending", set: func() {}, wantWaits: false},
		{name: "change pending", set: func() { s.dirty.Insert(types.NamespacedName{Name: "web"}) }, wantWaits: true},
		{name: "change held by minSyncPeriod", set: func() { s.dirty.Insert(types.NamespacedName{Name: "web"}); s.runner.holding.Store(true) }, wantWaits: false},
		{name: "full sync pending", set: func() { s.needFull = true }, wantWaits: true},
		{name: "sync running", set: func() { s.syncing.Store(true) }, wantWaits: true},
	} {
		s.dirty, s.needFull = sets.New[types.NamespacedName](), false
		s.syncing.Store(false)
		s.runner.holding.Store(false)
		tc.set()
		if got := waits(); got != tc.wantWaits {
			t.Errorf("%s: waited %v, want %v", tc.name, got, tc.wantWaits)
		}
	}
}

// A background reconcile reads the kernel only once the syncs have been
// quiet for reconcileQuiet, unless the round's budget for waiting is used
// up; a pending change holds it back in any case.
func TestPacerQuiet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newIdleSyncer(t)
	for _, tc := range []struct {
		name      string
		lastAgo   time.Duration
		budget    time.Duration
		pending   bool
		wantWaits bool
	}{
		{name: "quiet for long", lastAgo: time.Second, budget: time.Hour},
		{name: "a change just synced", lastAgo: 0, budget: time.Hour, wantWaits: true},
		{name: "a change just synced, budget used up", lastAgo: 0, budget: 0},
		{name: "change pending, budget used up", lastAgo: time.Second, budget: 0, pending: true, wantWaits: true},
	} {
		s.dirty, s.needFull = sets.New[types.NamespacedName](), false
		if tc.pending {
			s.dirty.Insert(types.NamespacedName{Name: "web"})
		}
		s.lastActive.Store(time.Now().Add(-tc.lastAgo).UnixNano())
		p := s.newPacer(ctx)
		p.budget = tc.budget
		c, stop := context.WithTimeout(ctx, reconcileQuiet/3)
		got := p.Quiet(c) != nil
		stop()
		if got != tc.wantWaits {
			t.Errorf("%s: waited %v, want %v", tc.name, got, tc.wantWaits)
		}
	}
}

func TestWaitQuiet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newIdleSyncer(t)
	const quiet, limit = 300 * time.Millisecond, 900 * time.Millisecond
	for _, tc := range []struct {
		name          string
		lastAgo       time.Duration
		pending       bool
		least, atMost time.Duration
	}{
		{name: "quiet for long", lastAgo: time.Second, least: 0, atMost: quiet / 2},
		{name: "a change just synced", lastAgo: 0, least: quiet * 3 / 4, atMost: limit},
		{name: "change pending: waits until the limit", lastAgo: time.Second, pending: true, least: limit, atMost: 10 * limit},
	} {
		s.dirty, s.needFull = sets.New[types.NamespacedName](), false
		if tc.pending {
			s.dirty.Insert(types.NamespacedName{Name: "web"})
		}
		s.lastActive.Store(time.Now().Add(-tc.lastAgo).UnixNano())
		t0 := time.Now()
		if err := s.waitQuiet(ctx, quiet, limit); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if took := time.Since(t0); took < tc.least || took > tc.atMost {
			t.Errorf("%s: waited %v, want %v..%v", tc.name, took, tc.least, tc.atMost)
		}
	}
	done, stop := context.WithCancel(ctx)
	stop()
	s.dirty.Insert(types.NamespacedName{Name: "web"})
	if err := s.waitQuiet(done, quiet, limit); err == nil {
		t.Errorf("ended context: waitQuiet returned nil")
	}
}

// newIdleSyncer is a syncer over a recording plane and an empty fake
// clientset, with no periodic full sync due during a test.
func newIdleSyncer(t *testing.T) *Syncer {
	t.Helper()
	s, err := New(fake.NewClientset(), &recPlane{ch: make(chan struct{}, 1)}, Options{NodeName: "n1",
		Families: []v1.IPFamily{v1.IPv4Protocol}, SyncPeriod: time.Hour, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
