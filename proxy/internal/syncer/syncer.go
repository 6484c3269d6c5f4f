// Package syncer watches Services, EndpointSlices and this Node, keeps the
// desired servicestate.State up to date one Service at a time, and hands
// each change set to the data plane, rate-limited by minSyncPeriod and with
// a periodic full reconcile.
package syncer

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/nodesuite/nodesuite/proxy/internal/health"
	"github.com/nodesuite/nodesuite/proxy/internal/servicestate"
)

// Labels kube-proxy filters on (k8s.io/api/core/v1 and discovery v1).
const (
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	labelHeadless         = v1.IsHeadlessService
	indexByService        = "service"
)

// Options configure a Syncer.
type Options struct {
	NodeName          string
	Families          []v1.IPFamily
	NodePortAddresses []string
	// HostAddresses lists the host's interface addresses (NodePort candidates).
	HostAddresses    func() ([]netip.Addr, error)
	MinSyncPeriod    time.Duration
	SyncPeriod       time.Duration
	ConfigSyncPeriod time.Duration
	Registry         prometheus.Registerer
	Health           *health.Server
	Log              *zap.Logger
}

// Reaper is implemented by data planes that drain real servers between syncs.
type Reaper interface{ Reap() error }

// BackgroundReconciler is a data plane whose periodic full reconcile reads
// the kernel beside the syncs, in small parts, when the pacer says the
// syncs are quiet, and hands each part's corrections to the pacer's Apply,
// which runs them on the sync goroutine between two syncs with the current
// state (ipvs.Plane.Reconcile). A change then never waits behind a full
// reconcile: the syncer makes no periodic sync full, it runs Reconcile
// every SyncPeriod (from the end of the last) instead.
type BackgroundReconciler interface {
	Reconcile(ctx context.Context, pace servicestate.Pacer) error
}

// Syncer is the proxy's control loop.
type Syncer struct {
	opts   Options
	plane  servicestate.DataPlane
	m      *metrics
	log    *zap.Logger
	runner *Runner

	svcFactory, nodeFactory informers.SharedInformerFactory
	svcLister               listersv1.ServiceLister
	sliceIndexer            cache.Indexer
	nodeLister              listersv1.NodeLister

	// syncing is set while the sync goroutine syncs: the background
	// reconcile waits.
	syncing atomic.Bool
	// lastActive is when (UnixNano) the last change was queued or the last
	// sync ended: the background reconcile waits for a quiet while after.
	lastActive atomic.Int64

	mu       sync.Mutex
	dirty    sets.Set[types.NamespacedName]
	triggers map[types.NamespacedName][]time.Time
	needFull bool
	node     *v1.Node
	// usedAddrs are the Node's addresses the last state was built with: an
	// event that brings no others (the informer's first, after the first
	// sync already read the Node from its cache) needs no full sync.
	usedAddrs []v1.NodeAddress
	usedNode  bool
	// hostAddrs is the last HostAddresses answer, refreshed beside the
	// syncs (hostAddressPeriod): listing every interface's addresses costs
	// several netlink dumps, too much for each one-Service sync.
	hostAddrs []netip.Addr
	hostErr   error

	// Owned by the sync goroutine.
	state  *servicestate.State
	keysOf map[types.NamespacedName][]servicestate.Key
	// endpoints counts state's endpoints, kept up to date per change (a
	// recount at each sync costs as much as the sync at 10,000 Services).
	endpoints int
	lastFull  time.Time
	// synced is closed after the first successful sync.
	synced     chan struct{}
	syncedOnce sync.Once
	nodeIPs    []netip.Addr
	ctx        context.Context
}

// New wires informers on client; Run starts them.
func New(client kubernetes.Interface, plane servicestate.DataPlane, opts Options) (*Syncer, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = 30 * time.Second
	}
	if opts.HostAddresses == nil {
		opts.HostAddresses = func() ([]netip.Addr, error) { return nil, nil }
	}
	noProxyName, err := labels.NewRequirement(labelServiceProxyName, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	noHeadless, err := labels.NewRequirement(labelHeadless, selection.DoesNotExist, nil)
	if err != nil {
		return nil, err
	}
	sel := labels.NewSelector().Add(*noProxyName, *noHeadless).String()
	s := &Syncer{opts: opts, plane: plane, m: newMetrics(opts.Registry), log: opts.Log,
		dirty: sets.New[types.NamespacedName](), triggers: map[types.NamespacedName][]time.Time{}, needFull: true,
		keysOf: map[types.NamespacedName][]servicestate.Key{}, synced: make(chan struct{})}
	s.svcFactory = informers.NewSharedInformerFactoryWithOptions(client, opts.ConfigSyncPeriod, informers.WithTransform(slim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	s.nodeFactory = informers.NewSharedInformerFactoryWithOptions(client, opts.ConfigSyncPeriod, informers.WithTransform(slim),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", opts.NodeName).String()
		}))
	svcInf := s.svcFactory.Core().V1().Services()
	sliceInf := s.svcFactory.Discovery().V1().EndpointSlices()
	nodeInf := s.nodeFactory.Core().V1().Nodes()
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{indexByService: func(obj any) ([]string, error) {
		sl, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return nil, nil
		}
		if n, ok := servicestate.ServiceNameOf(sl); ok {
			return []string{n.String()}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, err
	}
	s.svcLister, s.sliceIndexer, s.nodeLister = svcInf.Lister(), sliceInf.Informer().GetIndexer(), nodeInf.Lister()
	// Objects of the informers' initial lists are left to the first sync,
	// which is full and reads them from the caches: marking each dirty as
	// well (20,000 events at 10,000 Services, delivered while that sync
	// runs) would only rebuild them all again in a second sync.
	_, err = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			if !initial {
				s.serviceChanged(o)
			}
		},
		UpdateFunc: func(_, o any) { s.serviceChanged(o) },
		DeleteFunc: func(o any) { s.serviceChanged(o) },
	})
	if err != nil {
		return nil, err
	}
	_, err = sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			if !initial {
				s.sliceChanged(o)
			}
		},
		UpdateFunc: func(_, o any) { s.sliceChanged(o) },
		DeleteFunc: func(o any) { s.sliceChanged(o) },
	})
	if err != nil {
		return nil, err
	}
	_, err = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.nodeChanged(o) },
		UpdateFunc: func(_, o any) { s.nodeChanged(o) },
		DeleteFunc: func(any) { s.nodeChanged(nil) },
	})
	if err != nil {
		return nil, err
	}
	s.runner = NewRunner(s.syncAndRetry, opts.MinSyncPeriod, opts.SyncPeriod)
	return s, nil
}

func unwrap(o any) any {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

// queued triggers a sync. first says no other change was pending: only
// then is the time stamped, since a later change of the same batch is
// synced at the same time, and reading the clock for each of the 20,000
// events of a 10,000-Service start costs much in a guest whose
// clock_gettime is a system call (user-mode-linux).
func (s *Syncer) queued(first bool) {
	if !first {
		s.runner.Trigger()
		return
	}
	now := time.Now()
	s.lastActive.Store(now.UnixNano())
	s.m.lastQueued.Set(float64(now.UnixNano()) / 1e9)
	if s.opts.Health != nil {
		for _, f := range s.opts.Families {
			s.opts.Health.QueuedUpdateAt(f, now)
		}
	}
	s.runner.Trigger()
}

func (s *Syncer) serviceChanged(o any) {
	svc, ok := unwrap(o).(*v1.Service)
	if !ok {
		return
	}
	s.mu.Lock()
	first := s.dirty.Len() == 0
	s.dirty.Insert(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name})
	s.m.serviceChanges.Inc()
	s.m.servicePending.Set(float64(s.dirty.Len()))
	s.mu.Unlock()
	s.queued(first)
}

func (s *Syncer) sliceChanged(o any) {
	sl, ok := unwrap(o).(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	n, ok := servicestate.ServiceNameOf(sl)
	if !ok {
		return
	}
	s.mu.Lock()
	first := s.dirty.Len() == 0
	s.dirty.Insert(n)
	// The EndpointSlice controller stamps when the change that caused this
	// update happened (a Pod became ready, ...); kube-proxy measures from it.
	if v := sl.Annotations[v1.EndpointsLastChangeTriggerTime]; v != "" {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			s.triggers[n] = append(s.triggers[n], t)
		}
	}
	s.m.endpointChanges.Inc()
	s.m.endpointPending.Set(float64(s.dirty.Len()))
	s.mu.Unlock()
	s.queued(first)
}

func (s *Syncer) nodeChanged(o any) {
	n, _ := unwrap(o).(*v1.Node)
	s.mu.Lock()
	old := s.node
	s.node = n
	// Only what changes NodeIPs or locality needs a full rebuild.
	changed := old == nil || n == nil || !reflect.DeepEqual(old.Status.Addresses, n.Status.Addresses)
	if n != nil && s.usedNode && reflect.DeepEqual(s.usedAddrs, n.Status.Addresses) {
		changed = false
	}
	if changed {
		s.needFull = true
	}
	s.mu.Unlock()
	if changed {
		s.queued(true)
	}
}

// hostAddressPeriod is how often the host's addresses are read again; a
// change triggers a sync.
const hostAddressPeriod = 2 * time.Second

// refreshHostAddresses reads the host's addresses and says whether they
// changed.
func (s *Syncer) refreshHostAddresses() bool {
	addrs, err := s.opts.HostAddresses()
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := !reflect.DeepEqual(addrs, s.hostAddrs)
	if err != nil {
		s.hostErr = err // keep the last good list
		return false
	}
	s.hostAddrs, s.hostErr = addrs, nil
	return changed
}

// The host-address refresh waits for a quiet moment: no change pending
// and none queued or synced for hostAddressQuiet. The listing costs ~5 ms
// of CPU in user-mode-linux, and on one CPU (that guest, a busy node) a
// change that came meanwhile would wait for it. hostAddressMaxWait bounds
// the wait, so a node whose Services never stop changing still sees a new
// address.
const (
	hostAddressQuiet   = 100 * time.Millisecond
	hostAddressMaxWait = 10 * time.Second
	// hostAddressPoll is how often the wait looks again while a change
	// is pending (a first sync can take many seconds).
	hostAddressPoll = 50 * time.Millisecond
)

func (s *Syncer) refreshHostAddressesAndQueue(ctx context.Context) {
	if s.waitQuiet(ctx, hostAddressQuiet, hostAddressMaxWait) != nil {
		return
	}
	if s.refreshHostAddresses() {
		s.queued(true)
	}
}

// waitQuiet returns once no change is pending and none was queued or
// synced for quiet, or when limit has passed; an error only if ctx ended.
func (s *Syncer) waitQuiet(ctx context.Context, quiet, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		now := time.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil
		}
		wait := hostAddressPoll
		if !s.changePending() {
			since := now.Sub(time.Unix(0, s.lastActive.Load()))
			if since >= quiet {
				return nil
			}
			wait = quiet - since
		}
		if err := sleepCtx(ctx, min(wait, left)); err != nil {
			return err
		}
	}
}

// Node is this node as last seen, for the health server.
func (s *Syncer) Node() *v1.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node
}

// Run starts the informers, waits for their caches and syncs until ctx ends.
func (s *Syncer) Run(ctx context.Context) error {
	s.svcFactory.Start(ctx.Done())
	s.nodeFactory.Start(ctx.Done())
	defer s.svcFactory.Shutdown()
	defer s.nodeFactory.Shutdown()
	for _, f := range []informers.SharedInformerFactory{s.svcFactory, s.nodeFactory} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil // stopped before the API server answered
				}
				return fmt.Errorf("cache of %v never synced", typ)
			}
		}
	}
	s.log.Info("caches synced; starting sync loop", zap.String("dataPlane", s.plane.Name()),
		zap.Duration("minSyncPeriod", s.opts.MinSyncPeriod), zap.Duration("syncPeriod", s.opts.SyncPeriod))
	if r, ok := s.plane.(Reaper); ok {
		go wait.UntilWithContext(ctx, func(context.Context) {
			if err := r.Reap(); err != nil {
				s.log.Warn("draining real servers", zap.Error(err))
			}
		}, 2*time.Second)
	}
	s.ctx = ctx
	s.refreshHostAddresses()
	go wait.UntilWithContext(ctx, s.refreshHostAddressesAndQueue, hostAddressPeriod)
	if r, ok := s.plane.(BackgroundReconciler); ok {
		go s.reconcileLoop(ctx, r)
	}
	s.runner.Run(ctx)
	return nil
}

func (s *Syncer) reconcileLoop(ctx context.Context, r BackgroundReconciler) {
	select {
	case <-ctx.Done():
		return
	case <-s.synced:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.opts.SyncPeriod):
		}
		start := time.Now()
		if err := r.Reconcile(ctx, s.newPacer(ctx)); err != nil && ctx.Err() == nil {
			s.log.Warn("background reconcile", zap.Error(err))
		}
		s.log.Debug("background reconcile done", zap.Duration("took", time.Since(start)))
	}
}

// reconcileMaxPause bounds the pause after each part of a background
// reconcile.
const reconcileMaxPause = 100 * time.Millisecond

// reconcileQuiet is how long after the last change (queued or synced) a
// background reconcile reads the kernel: changes tend to come in bursts
// (a rollout), and a read in the middle of one would slow the next.
const reconcileQuiet = 300 * time.Millisecond

// pacer paces one background reconcile. Its reads run beside the sync
// goroutine, and on a single CPU (the user-mode-linux guest; a busy node)
// they slow a change's sync as much as they take. So a read waits until no
// change is pending and none came for reconcileQuiet; in a cluster that is
// never quiet that wait ends after SyncPeriod in all per round (budget),
// after which a read waits only for pending changes. After each part is
// applied the pacer pauses as long as the read took (at most
// reconcileMaxPause): at most half the CPU goes to the reconcile.
type pacer struct {
	s   *Syncer
	ctx context.Context
	// budget is what is left of the round's waiting for quiet.
	budget time.Duration
	// readStart is when the last Quiet returned: the read began.
	readStart time.Time
}

var _ servicestate.Pacer = (*pacer)(nil)

func (s *Syncer) newPacer(ctx context.Context) *pacer {
	return &pacer{s: s, ctx: ctx, budget: s.opts.SyncPeriod, readStart: time.Now()}
}

// Quiet implements servicestate.Pacer.
func (p *pacer) Quiet(ctx context.Context) error {
	for {
		if err := p.s.waitNoChange(ctx); err != nil {
			return err
		}
		since := time.Since(time.Unix(0, p.s.lastActive.Load()))
		wait := min(reconcileQuiet-since, p.budget)
		if wait <= 0 {
			p.readStart = time.Now()
			return nil
		}
		t0 := time.Now()
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
		p.budget -= time.Since(t0)
	}
}

// Apply implements servicestate.Pacer.
func (p *pacer) Apply(f func(*servicestate.State) error) error {
	read := time.Since(p.readStart)
	if err := p.s.waitNoChange(p.ctx); err != nil {
		return err
	}
	if err := p.s.applyInLoop(f); err != nil {
		return err
	}
	return sleepCtx(p.ctx, min(read, reconcileMaxPause))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// changeWaitPoll is how often waitNoChange looks again.
const changeWaitPoll = 5 * time.Millisecond

// waitNoChange returns once no sync runs and no change is pending, unless
// minSyncPeriod holds the change back (that may be long).
func (s *Syncer) waitNoChange(ctx context.Context) error {
	for s.changePending() {
		t := time.NewTimer(changeWaitPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func (s *Syncer) changePending() bool {
	if s.syncing.Load() {
		return true
	}
	if s.runner.Holding() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dirty.Len() > 0 || s.needFull
}

// applyInLoop runs f on the sync goroutine between two syncs (not counted
// as one: minSyncPeriod does not delay the next change for it).
func (s *Syncer) applyInLoop(f func(*servicestate.State) error) error {
	done := make(chan error, 1)
	run := func() {
		if s.state == nil {
			done <- fmt.Errorf("no state synced yet")
			return
		}
		done <- f(s.state)
	}
	if !s.runner.Do(s.ctx, run) {
		return s.ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func (s *Syncer) syncAndRetry() {
	s.syncing.Store(true)
	defer s.syncing.Store(false)
	if err := s.SyncOnce(s.ctx); err != nil {
		if s.ctx.Err() != nil {
			return // shutting down: the next process adopts what is there
		}
		s.m.syncErrors.Inc()
		s.log.Error("sync failed; retrying with a full sync", zap.Error(err))
		s.mu.Lock()
		s.needFull = true
		s.mu.Unlock()
		time.AfterFunc(time.Second, s.runner.Trigger)
	}
}

func (s *Syncer) builderConfig() servicestate.Config {
	cfg := servicestate.Config{NodeName: s.opts.NodeName, Families: s.opts.Families, NodePortAddresses: s.opts.NodePortAddresses}
	s.mu.Lock()
	if s.hostErr != nil {
		s.log.Warn("listing host addresses", zap.Error(s.hostErr))
	}
	cfg.HostAddresses = s.hostAddrs
	node := s.node
	if node == nil && s.nodeLister != nil {
		// The handler may not have run yet; the synced cache has it.
		if n, err := s.nodeLister.Get(s.opts.NodeName); err == nil {
			node = n
		}
	}
	s.usedNode, s.usedAddrs = node != nil, nil
	if node != nil {
		s.usedAddrs = node.Status.Addresses
		for _, a := range node.Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil {
					cfg.PrimaryIPs = append(cfg.PrimaryIPs, ip)
				}
			}
		}
	}
	s.mu.Unlock()
	return cfg
}

func (s *Syncer) slicesOf(n types.NamespacedName) []*discoveryv1.EndpointSlice {
	objs, _ := s.sliceIndexer.ByIndex(indexByService, n.String())
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, sl)
		}
	}
	return out
}

// SyncOnce applies what changed since the last sync (everything when a full
// reconcile is due). Only the sync goroutine calls it.
func (s *Syncer) SyncOnce(ctx context.Context) error {
	start := time.Now()
	s.mu.Lock()
	dirty, triggers, full := s.dirty, s.triggers, s.needFull
	s.dirty, s.triggers, s.needFull = sets.New[types.NamespacedName](), map[types.NamespacedName][]time.Time{}, false
	s.m.servicePending.Set(0)
	s.m.endpointPending.Set(0)
	s.mu.Unlock()

	cfg := s.builderConfig()
	nodeIPs := servicestate.NodeIPs(cfg)
	_, background := s.plane.(BackgroundReconciler)
	if s.state == nil || (!background && start.Sub(s.lastFull) >= s.opts.SyncPeriod) || !reflect.DeepEqual(nodeIPs, s.nodeIPs) {
		full = true
	}

	changed := sets.New[servicestate.Key]()
	if full {
		svcs, err := s.svcLister.List(labels.Everything())
		if err != nil {
			return err
		}
		// Sized up front: growing maps of 10,000 entries step by step
		// costs table splits and, in user-mode-linux, page faults.
		n := len(svcs)
		st := &servicestate.State{Services: make(map[servicestate.Key]*servicestate.ServicePort, n),
			Endpoints: make(map[servicestate.Key][]servicestate.Endpoint, n), LocalEndpoints: make(map[servicestate.Key][]servicestate.Endpoint, n), NodeIPs: nodeIPs}
		keysOf := make(map[types.NamespacedName][]servicestate.Key, n)
		for _, svc := range svcs {
			n := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
			if ks := st.AddService(svc, s.slicesOf(n), cfg, nil); len(ks) > 0 {
				keysOf[n] = ks
			}
		}
		s.state, s.keysOf, s.endpoints = st, keysOf, 0
		for _, e := range st.Endpoints {
			s.endpoints += len(e)
		}
		changed = make(sets.Set[servicestate.Key], len(st.Services))
		for k := range st.Services {
			changed.Insert(k)
		}
	} else {
		for n := range dirty {
			svc, err := s.svcLister.Services(n.Namespace).Get(n.Name)
			if err != nil {
				svc = nil // deleted (or not ours any more)
			}
			r := servicestate.BuildService(svc, s.slicesOf(n), cfg)
			st := s.state
			for _, k := range s.keysOf[n] {
				s.endpoints -= len(st.Endpoints[k])
				if _, still := r.Services[k]; !still {
					delete(st.Services, k)
					delete(st.Endpoints, k)
					delete(st.LocalEndpoints, k)
					changed.Insert(k)
				}
			}
			var keys []servicestate.Key
			for k, sp := range r.Services {
				keys = append(keys, k)
				if old := st.Services[k]; old == nil || !reflect.DeepEqual(old, sp) ||
					!reflect.DeepEqual(st.Endpoints[k], r.Endpoints[k]) || !reflect.DeepEqual(st.LocalEndpoints[k], r.LocalEndpoints[k]) {
					changed.Insert(k)
				}
			}
			st.Merge(r)
			for _, k := range keys {
				s.endpoints += len(st.Endpoints[k])
			}
			if len(keys) > 0 {
				s.keysOf[n] = keys
			} else {
				delete(s.keysOf, n)
			}
		}
	}
	if !full && changed.Len() == 0 {
		s.markSynced(start, triggers, false)
		return nil
	}
	if err := s.plane.Sync(ctx, s.state, changed, full); err != nil {
		// Keep the triggers for the retry's latency measurement.
		s.mu.Lock()
		for n, ts := range triggers {
			s.triggers[n] = append(ts, s.triggers[n]...)
		}
		s.mu.Unlock()
		return fmt.Errorf("%s sync (full=%t, %d changed): %w", s.plane.Name(), full, changed.Len(), err)
	}
	s.nodeIPs = nodeIPs
	if full {
		// From the end: a full sync longer than SyncPeriod (thousands of
		// Services on a slow kernel) must not make every next sync full.
		s.lastFull = time.Now()
		// A full sync's garbage (the initial lists, the whole desired
		// state, netlink requests) would otherwise stay in the process's
		// RSS as idle heap for minutes; give it back now. Beside the sync
		// loop: it forces a GC.
		go debug.FreeOSMemory()
	}
	s.markSynced(start, triggers, full)
	s.syncedOnce.Do(func() { close(s.synced) })
	if ce := s.log.Check(zap.DebugLevel, "synced"); ce != nil {
		ce.Write(zap.Bool("full", full), zap.Int("changed", changed.Len()), zap.Duration("took", time.Since(start)))
	}
	return nil
}

func (s *Syncer) markSynced(start time.Time, triggers map[types.NamespacedName][]time.Time, full bool) {
	// One clock read for everything here: in a guest whose clock is a
	// system call (user-mode-linux) each costs as much as a netlink call.
	now := time.Now()
	d := now.Sub(start).Seconds()
	s.m.syncDuration.Observe(d)
	if full {
		s.m.fullDuration.Observe(d)
	} else {
		s.m.partialDuration.Observe(d)
	}
	for _, ts := range triggers {
		for _, t := range ts {
			s.m.networkProgramming.Observe(now.Sub(t).Seconds())
		}
	}
	s.lastActive.Store(now.UnixNano())
	s.m.lastSync.Set(float64(now.UnixNano()) / 1e9)
	s.m.services.Set(float64(len(s.state.Services)))
	s.m.endpoints.Set(float64(s.endpoints))
	if s.opts.Health != nil {
		for _, f := range s.opts.Families {
			s.opts.Health.UpdatedAt(f, now)
		}
	}
}
