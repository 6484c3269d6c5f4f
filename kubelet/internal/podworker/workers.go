package podworker

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodesuite/nodesuite/kubelet/internal/admission"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
)

// StatusWriter is the status manager seen by the workers.
type StatusWriter interface {
	Set(ctx context.Context, pod *v1.Pod, st v1.PodStatus) error
	Last(uid types.UID) (v1.PodStatus, bool)
	Forget(uid types.UID)
	FinishDeletion(ctx context.Context, pod *v1.Pod) error
}

// Prober is the probe manager seen by the workers.
type Prober interface {
	Sync(ctx context.Context, pod *v1.Pod, rp *runtime.Pod, podIP string)
	State(c *v1.Container, containerID string, running bool) (started, ready bool)
	Forget(uid types.UID)
}

func podIP(rp *runtime.Pod) string {
	if sb := rp.ActiveSandbox(); sb != nil && sb.Network != nil {
		return sb.Network.Ip
	}
	return ""
}

// Workers runs one goroutine per Pod; each serializes that Pod's syncs.
type Workers struct {
	Syncer    *Syncer
	Status    StatusWriter
	Admission func() admission.Node
	Log       *zap.Logger
	// Prober runs the containers' probes; nil runs none (running means ready).
	Prober Prober
	// Resync is how often a Pod is synced without an event.
	Resync time.Duration

	ctx     context.Context
	mu      sync.Mutex
	pods    map[types.UID]*v1.Pod
	workers map[types.UID]chan struct{}
	// rejected Pods never run: their status stays what admission wrote.
	rejected map[types.UID]bool
	// A runtime change notice (PLEG) that the Pod's last sync has already
	// seen wakes no sync: upstream's workers likewise wait only for a
	// runtime view newer than their last sync. Most notices in a Pod's
	// start are of the sync's own actions, which it re-read.
	wakes map[types.UID]*wake
	wg    sync.WaitGroup
}

// wake is what a Pod's worker was asked since its last sync began.
type wake struct {
	notice time.Time // newest runtime change noticed and not yet synced; zero: none
	forced bool      // a sync is asked for, whatever the runtime did
	readAt time.Time // when the last sync's runtime view was read; zero: unknown
}

// Start sets the context every worker runs under.
func (w *Workers) Start(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ctx = ctx
	if w.pods == nil {
		w.pods = map[types.UID]*v1.Pod{}
		w.workers = map[types.UID]chan struct{}{}
	}
	if w.Resync == 0 {
		w.Resync = 10 * time.Second
	}
}

// Wait waits for every worker to return (after the context ends).
func (w *Workers) Wait() { w.wg.Wait() }

// Update is called with every version of a Pod bound to this node.
func (w *Workers) Update(pod *v1.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rejected[pod.UID] {
		if pod.DeletionTimestamp != nil {
			go func() {
				if err := w.Status.FinishDeletion(w.ctx, pod); err != nil {
					w.Log.Warn("finish deletion of a rejected pod", zap.Error(err))
				}
			}()
		}
		return
	}
	if _, running := w.workers[pod.UID]; !running {
		if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			if _, known := w.pods[pod.UID]; !known && pod.DeletionTimestamp == nil {
				// Finished before we saw it: a worker still cleans up what runs.
				w.pods[pod.UID] = pod
				w.startLocked(pod.UID)
				return
			}
		}
		if pod.DeletionTimestamp == nil && pod.Status.Phase != v1.PodSucceeded && pod.Status.Phase != v1.PodFailed {
			if r := w.admit(pod); !r.Admit {
				w.reject(pod, r)
				return
			}
		}
		w.pods[pod.UID] = pod
		w.startLocked(pod.UID)
		return
	}
	prev := w.pods[pod.UID]
	w.pods[pod.UID] = pod
	if prev != nil && !differSemantically(prev, pod) && len(pod.Spec.ReadinessGates) == 0 {
		// Only the status changed, mostly by our own patch coming back
		// through the informer: upstream's config source calls this a
		// reconcile and does not sync the Pod (unless readiness gates need
		// the Ready condition recomputed), so neither do we.
		return
	}
	w.forceLocked(pod.UID)
}

// differSemantically is upstream's podsDifferSemantically: a change of
// spec, labels, annotations or deletion needs a sync; a status-only change
// does not.
func differSemantically(a, b *v1.Pod) bool {
	return !apiequality.Semantic.DeepEqual(a.Spec, b.Spec) ||
		!apiequality.Semantic.DeepEqual(a.Labels, b.Labels) ||
		!apiequality.Semantic.DeepEqual(a.Annotations, b.Annotations) ||
		!apiequality.Semantic.DeepEqual(a.DeletionTimestamp, b.DeletionTimestamp) ||
		!apiequality.Semantic.DeepEqual(a.DeletionGracePeriodSeconds, b.DeletionGracePeriodSeconds)
}

func (w *Workers) admit(pod *v1.Pod) admission.Result {
	if w.Admission == nil {
		return admission.Result{Admit: true}
	}
	var active []*v1.Pod
	for _, p := range w.pods {
		if p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed && p.UID != pod.UID {
			active = append(active, p)
		}
	}
	return admission.Admit(w.Admission(), active, pod)
}

func (w *Workers) reject(pod *v1.Pod, r admission.Result) {
	msg := "Pod was rejected: " + r.Message
	w.Log.Info("pod rejected", zap.String("pod", formatPod(pod)), zap.String("reason", r.Reason))
	w.Syncer.event(ref(pod, nil, false), v1.EventTypeWarning, r.Reason, "%s", r.Message)
	if w.rejected == nil {
		w.rejected = map[types.UID]bool{}
	}
	w.rejected[pod.UID] = true
	st := pod.Status.DeepCopy()
	st.Phase, st.Reason, st.Message = v1.PodFailed, r.Reason, msg
	// What upstream's status manager adds to every status it writes.
	st.ObservedGeneration = pod.Generation
	if st.StartTime == nil {
		now := metav1.NewTime(w.Syncer.now())
		st.StartTime = &now
	}
	go func() {
		if err := w.Status.Set(w.ctx, pod, *st); err != nil {
			w.Log.Warn("reject pod", zap.Error(err))
		}
	}()
}

// Remove is called when a Pod is gone from its source (deleted for good).
func (w *Workers) Remove(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.pods, uid)
	if w.rejected[uid] {
		delete(w.rejected, uid)
		return
	}
	if _, ok := w.workers[uid]; ok {
		w.forceLocked(uid)
		return
	}
	// An orphan the runtime still holds (found by the PLEG or on start).
	w.startLocked(uid)
}

// Trigger asks the Pod's worker to sync now (probe results, kills).
func (w *Workers) Trigger(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.workers[uid]; ok {
		w.forceLocked(uid)
		return
	}
	if _, known := w.pods[uid]; !known {
		w.startLocked(uid) // orphan: the worker kills and removes it
	}
}

// Changed tells the Pod's worker that the runtime changed the Pod's
// objects before at (PLEG); it syncs unless its last sync read the
// runtime after at.
func (w *Workers) Changed(uid types.UID, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.workers[uid]; ok {
		if wk := w.wakeLocked(uid); at.After(wk.notice) {
			wk.notice = at
		}
		w.triggerLocked(uid)
		return
	}
	if _, known := w.pods[uid]; !known {
		w.startLocked(uid) // orphan: the worker kills and removes it
	}
}

// wakeLocked is the Pod's wake state, made on first use.
func (w *Workers) wakeLocked(uid types.UID) *wake {
	if w.wakes == nil {
		w.wakes = map[types.UID]*wake{}
	}
	wk := w.wakes[uid]
	if wk == nil {
		wk = &wake{}
		w.wakes[uid] = wk
	}
	return wk
}

func (w *Workers) forceLocked(uid types.UID) {
	w.wakeLocked(uid).forced = true
	w.triggerLocked(uid)
}

// seen tells, as a wake-up by notice is taken, whether the Pod's last sync
// has already seen every change noticed; otherwise the sync about to run
// covers what was asked so far.
func (w *Workers) seen(uid types.UID, woken bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	wk := w.wakeLocked(uid)
	skip := woken && !wk.forced && !wk.notice.IsZero() && !wk.readAt.IsZero() && wk.notice.Before(wk.readAt)
	wk.notice, wk.forced = time.Time{}, false
	return skip
}

// Known tells whether a Pod UID is desired (in a source).
func (w *Workers) Known(uid types.UID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.pods[uid]
	return ok
}

// Active returns the admitted, non-terminal Pods sorted by name.
func (w *Workers) Active() []*v1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*v1.Pod
	for _, p := range w.pods {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out
}

func (w *Workers) triggerLocked(uid types.UID) {
	select {
	case w.workers[uid] <- struct{}{}:
	default: // a sync is already pending; it will read the newest Pod
	}
}

func (w *Workers) startLocked(uid types.UID) {
	if w.ctx == nil {
		return
	}
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	w.wakeLocked(uid).forced = true // the first sync runs whatever
	w.workers[uid] = ch
	w.wg.Add(1)
	go w.run(uid, ch)
}

func (w *Workers) run(uid types.UID, ch chan struct{}) {
	defer w.wg.Done()
	ctx := w.ctx
	timer := time.NewTimer(w.Resync)
	defer timer.Stop()
	for {
		woken := false
		select {
		case <-ctx.Done():
			return
		case <-ch:
			woken = true
		case <-timer.C:
		}
		if w.seen(uid, woken) {
			continue // the resync timer keeps running
		}
		w.mu.Lock()
		pod, present := w.pods[uid]
		w.mu.Unlock()
		next := w.Resync
		if !present {
			if w.cleanup(ctx, uid) {
				return
			}
			next = time.Second
		} else {
			next = w.sync(ctx, pod)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// cleanup kills and removes an orphan; true once the worker may end.
func (w *Workers) cleanup(ctx context.Context, uid types.UID) bool {
	s := w.Syncer
	rp, err := s.RT.GetPod(ctx, uid)
	if err != nil {
		w.Log.Warn("orphan cleanup", zap.String("uid", string(uid)), zap.Error(err))
		return false
	}
	stand := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid, Name: rp.Name, Namespace: rp.Namespace}}
	if err := s.KillPod(ctx, stand, rp, minGrace); err != nil {
		w.Log.Warn("kill orphan", zap.String("uid", string(uid)), zap.Error(err))
		return false
	}
	if err := s.RemovePod(ctx, rp); err != nil {
		w.Log.Warn("remove orphan", zap.String("uid", string(uid)), zap.Error(err))
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, back := w.pods[uid]; back {
		return false
	}
	delete(w.workers, uid)
	delete(w.wakes, uid)
	w.Status.Forget(uid)
	if w.Prober != nil {
		w.Prober.Forget(uid)
	}
	return true
}

func (w *Workers) sync(ctx context.Context, pod *v1.Pod) time.Duration {
	s := w.Syncer
	log := w.Log.With(zap.String("pod", formatPod(pod)))
	// Work on the status we wrote last: the informer's copy may lag behind.
	pod = pod.DeepCopy()
	if last, ok := w.Status.Last(pod.UID); ok {
		pod.Status = last
	}
	var res Result
	var err error
	if pod.DeletionTimestamp != nil {
		rp, gerr := s.RT.GetPod(ctx, pod.UID)
		if gerr != nil {
			log.Warn("get runtime pod", zap.Error(gerr))
			return time.Second
		}
		res, err = s.finish(ctx, pod, rp, Result{})
	} else {
		res, err = s.SyncPod(ctx, pod)
	}
	if err != nil {
		log.Info("sync", zap.Error(err))
	}
	next := w.Resync
	if res.Requeue > 0 && res.Requeue < next {
		next = res.Requeue
	}
	if res.Runtime == nil {
		return next
	}
	if !res.Runtime.ReadAt.IsZero() {
		w.mu.Lock()
		w.wakeLocked(pod.UID).readAt = res.Runtime.ReadAt
		w.mu.Unlock()
	}
	var probe func(*v1.Container, string, bool) (bool, bool)
	if w.Prober != nil {
		ip := podIP(res.Runtime)
		if pod.Spec.HostNetwork && len(s.HostIPs) > 0 {
			ip = s.HostIPs[0]
		}
		w.Prober.Sync(ctx, pod, res.Runtime, ip)
		probe = w.Prober.State
	}
	st := status.Compute(status.Input{Pod: pod, Runtime: res.Runtime, RuntimeName: s.RuntimeName,
		Reasons: s.Reasons(pod.UID), HostIPs: s.HostIPs, Terminal: res.Terminal, Now: s.now(), Probe: probe})
	if res.Reason != "" {
		st.Phase, st.Reason, st.Message = v1.PodFailed, res.Reason, res.Message
	}
	if res.Terminal && st.Phase != v1.PodSucceeded && st.Phase != v1.PodFailed && pod.DeletionTimestamp == nil {
		// Everything stopped for good: upstream reports the terminal phase.
		st.Phase = v1.PodFailed
		if allSucceeded(st) {
			st.Phase = v1.PodSucceeded
		}
	}
	if err := w.Status.Set(ctx, pod, st); err != nil {
		log.Warn("status", zap.Error(err))
		return time.Second
	}
	if pod.DeletionTimestamp != nil {
		if res.Runtime.Running() {
			return time.Second
		}
		if err := w.Status.FinishDeletion(ctx, pod); err != nil {
			log.Warn("finish deletion", zap.Error(err))
			return time.Second
		}
	}
	return next
}

func allSucceeded(st v1.PodStatus) bool {
	for _, c := range st.ContainerStatuses {
		if c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

// Adopt starts workers for every Pod the runtime holds, so a restarted
// kubelet finds and keeps (or cleans up) what runs; nothing is restarted.
func (w *Workers) Adopt(ctx context.Context, rt *runtime.Runtime) error {
	pods, err := rt.ListPods(ctx)
	if err != nil {
		return err
	}
	for uid := range pods {
		w.Trigger(uid)
	}
	return nil
}
