// Package podworker runs one serialized worker per Pod that compares the
// Pod's spec with what the CRI runtime reports and acts: sandbox, images,
// init containers, sidecars, app containers, restarts with back-off, and
// termination with preStop hooks and grace periods.
package podworker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/gc"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
)

// Errors that become container waiting reasons.
var (
	ErrCrashLoopBackOff = errors.New(status.CrashLoopBackOff)
	ErrImagePullBackOff = errors.New(status.ImagePullBackOff)
	ErrImagePull        = errors.New(status.ErrImagePull)
	ErrImageNeverPull   = errors.New("ErrImageNeverPull")
	ErrInvalidImageName = errors.New("InvalidImageName")
)

// Syncer holds what syncing a Pod needs; one Syncer serves all workers.
type Syncer struct {
	RT           *runtime.Runtime
	RuntimeName  string
	Sources      containerconfig.Sources // nil when standalone
	Recorder     record.EventRecorder
	Node         containerconfig.Node
	HostIPs      []string
	Host         containerconfig.Host
	Backoff      *flowcontrol.Backoff
	ImageBackoff *flowcontrol.Backoff
	Log          *zap.Logger
	Clock        clock.Clock
	Allocatable  v1.ResourceList
	// RuntimeClassHandler maps a RuntimeClass name to its CRI handler; nil
	// (standalone) uses the name as the handler.
	RuntimeClassHandler func(ctx context.Context, name string) (string, error)
	// Volumes prepares the Pod's volumes; nil mounts none (a Pod with
	// volumes then fails to start its containers).
	Volumes VolumeManager
	// UserNS gives each Pod its user namespace and takes it back; required.
	UserNS UserNamespaces
	// Cgroups makes each Pod's cgroup (limits by QoS class) before its
	// sandbox and removes it with the Pod; nil leaves them to the runtime.
	Cgroups PodCgroups

	mu      sync.Mutex
	reasons map[types.UID]map[string]status.Reason
	// lastPullErr is the last pull failure by image back-off key, for the back-off message.
	lastPullErr map[string]string
	pullMu      sync.Mutex // serializeImagePulls
	// mountBackoff spaces the retries of a Pod whose volumes failed.
	mountBackoff *flowcontrol.Backoff
	// forbiddenSince is when a Pod's volumes were first refused by the
	// API server, within its authorizer's catch-up window.
	forbiddenSince map[types.UID]time.Time
}

// Volume retries as upstream's nestedpendingoperations: 500 ms, doubling
// up to 2m2s. A Pod's first token request often fails while the node
// authorizer has not yet seen the Pod, and the retry decides its start.
const (
	mountRetryInitial = 500 * time.Millisecond
	mountRetryMax     = 2*time.Minute + 2*time.Second
)

// The node authorizer allows a Pod's token and ConfigMaps only once its
// graph has the Pod, which can lag the kubelet's own watch by a few
// milliseconds. Within authorizerLag of the first refusal the sync retries
// every authorizerRetry without a FailedMount event; a refusal that lasts
// longer is reported and backs off as any volume failure.
const (
	authorizerLag   = time.Second
	authorizerRetry = 100 * time.Millisecond
)

// authorizerCatchUp tells whether err is a fresh refusal to retry soon.
func (s *Syncer) authorizerCatchUp(uid types.UID, err error) bool {
	if !apierrors.IsForbidden(err) {
		return false
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.forbiddenSince == nil {
		s.forbiddenSince = map[types.UID]time.Time{}
	}
	first, ok := s.forbiddenSince[uid]
	if !ok {
		s.forbiddenSince[uid], first = now, now
	}
	return now.Sub(first) < authorizerLag
}

// mountRetry is how long a Pod whose volumes failed waits for its next try.
func (s *Syncer) mountRetry(uid types.UID) time.Duration {
	s.mu.Lock()
	if s.mountBackoff == nil {
		s.mountBackoff = flowcontrol.NewBackOff(mountRetryInitial, mountRetryMax)
	}
	b := s.mountBackoff
	s.mu.Unlock()
	b.Next(string(uid), b.Clock.Now())
	return b.Get(string(uid))
}

// mountOK forgets a Pod's volume failures.
func (s *Syncer) mountOK(uid types.UID) {
	s.mu.Lock()
	b := s.mountBackoff
	delete(s.forbiddenSince, uid)
	s.mu.Unlock()
	if b != nil {
		b.Reset(string(uid))
	}
}

// PodCgroups keeps the Pods' cgroups (cm.Manager).
type PodCgroups interface {
	EnsurePod(pod *v1.Pod) error
	// RemovePod fails while processes remain; a later sweep retries.
	RemovePod(uid types.UID) error
}

// UserNamespaces hands out the Pods' user namespaces (userns.Manager).
type UserNamespaces interface {
	// GetOrCreate is the Pod's user namespace under the runtime handler,
	// the same on every call until Release.
	GetOrCreate(ctx context.Context, pod *v1.Pod, runtimeHandler string) (*runtimeapi.UserNamespace, error)
	Release(uid types.UID)
}

// VolumeManager prepares and removes a Pod's volumes on the host.
type VolumeManager interface {
	Setup(ctx context.Context, pod *v1.Pod) (map[string]containerconfig.HostVolume, error)
	Teardown(uid types.UID) error
}

// Result tells the worker what happened.
type Result struct {
	// Requeue asks for another sync after this long (back-off expiry); zero waits for an event.
	Requeue time.Duration
	// Terminal means no container of the Pod will run again.
	Terminal bool
	// Reason and Message are set on the Pod status when the kubelet failed it (DeadlineExceeded).
	Reason, Message string
	// Runtime is what the runtime held after the sync.
	Runtime *runtime.Pod
}

func (s *Syncer) setReason(uid types.UID, name string, r *status.Reason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reasons == nil {
		s.reasons = map[types.UID]map[string]status.Reason{}
	}
	if r == nil {
		delete(s.reasons[uid], name)
		return
	}
	if s.reasons[uid] == nil {
		s.reasons[uid] = map[string]status.Reason{}
	}
	s.reasons[uid][name] = *r
}

// Reasons returns a copy of the waiting reasons of the Pod's containers.
func (s *Syncer) Reasons(uid types.UID) map[string]status.Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]status.Reason{}
	for k, v := range s.reasons[uid] {
		out[k] = v
	}
	return out
}

// Forget drops what the Syncer keeps for a Pod that is gone.
func (s *Syncer) Forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reasons, uid)
	delete(s.forbiddenSince, uid)
}

func (s *Syncer) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

func ref(pod *v1.Pod, c *v1.Container, init bool) *v1.ObjectReference {
	r := &v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		ResourceVersion: pod.ResourceVersion}
	if c != nil {
		if init {
			r.FieldPath = fmt.Sprintf("spec.initContainers{%s}", c.Name)
		} else {
			r.FieldPath = fmt.Sprintf("spec.containers{%s}", c.Name)
		}
	}
	return r
}

func (s *Syncer) event(obj *v1.ObjectReference, typ, reason, format string, args ...any) {
	if s.Recorder != nil {
		s.Recorder.Eventf(obj, typ, reason, format, args...)
	}
}

func formatPod(pod *v1.Pod) string { return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID) }

// SyncPod drives a live (not deleted) Pod one step towards its spec.
func (s *Syncer) SyncPod(ctx context.Context, pod *v1.Pod) (Result, error) {
	rp, err := s.RT.GetPod(ctx, pod.UID)
	if err != nil {
		return Result{Requeue: time.Second}, err
	}
	res := Result{Runtime: rp}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return s.finish(ctx, pod, rp, res)
	}
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && pod.Status.StartTime != nil &&
		s.now().Sub(pod.Status.StartTime.Time) >= time.Duration(*d)*time.Second {
		res.Reason, res.Message = "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
		s.event(ref(pod, nil, false), v1.EventTypeNormal, "DeadlineExceeded", "%s", res.Message)
		return s.finish(ctx, pod, rp, res)
	}
	// Volumes first, on every sync: this also refreshes configMap, secret
	// and token contents. Like upstream, nothing starts until all are there.
	var vols map[string]containerconfig.HostVolume
	if s.Volumes != nil {
		if vols, err = s.Volumes.Setup(ctx, pod); err != nil {
			if s.authorizerCatchUp(pod.UID, err) {
				return Result{Requeue: authorizerRetry, Runtime: rp}, err
			}
			s.event(ref(pod, nil, false), v1.EventTypeWarning, "FailedMount", "%v", err)
			return Result{Requeue: s.mountRetry(pod.UID), Runtime: rp}, err
		}
		s.mountOK(pod.UID)
	}
	sb := rp.ActiveSandbox()
	created := false
	var userns *runtimeapi.UserNamespace
	if sb == nil {
		if len(rp.Sandboxes) > 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever && len(rp.Containers) > 0 {
			// Upstream does not recreate the sandbox of a Never Pod whose containers ran.
			return s.finish(ctx, pod, rp, res)
		}
		if err := s.killContainers(ctx, pod, rp, 0); err != nil {
			return res, err
		}
		if s.Cgroups != nil {
			// As upstream's syncPod: the pod cgroup, with the Pod's limits,
			// exists before anything runs in it.
			if err := s.Cgroups.EnsurePod(pod); err != nil {
				s.event(ref(pod, nil, false), v1.EventTypeWarning, "FailedCreatePodContainer", "unable to ensure pod container exists: %v", err)
				return Result{Requeue: backoff.Initial, Runtime: rp}, fmt.Errorf("pod cgroup: %w", err)
			}
		}
		id, ns, err := s.createSandbox(ctx, pod, rp)
		if err != nil {
			return Result{Requeue: backoff.Initial, Runtime: rp}, err
		}
		userns = ns
		// Only the new sandbox changed: read its status alone, not the
		// whole Pod again. The sync has acted, so it re-reads the Pod
		// before reporting its status.
		created = true
		st, err := s.RT.PodSandboxStatus(ctx, id, false)
		if err != nil || st.GetStatus() == nil {
			return Result{Requeue: time.Second, Runtime: rp}, fmt.Errorf("sandbox status after creation: %w", err)
		}
		rp = rp.WithSandbox(st.Status)
		res.Runtime = rp
		if sb = rp.ActiveSandbox(); sb == nil {
			return Result{Requeue: time.Second, Runtime: rp}, errors.New("sandbox not ready after creation")
		}
	}
	if !created {
		// The handler the sandbox runs under is what its RuntimeClass
		// names (a RuntimeClass's handler cannot change): no lookup needed.
		if userns, err = s.UserNS.GetOrCreate(ctx, pod, sb.RuntimeHandler); err != nil {
			return Result{Requeue: backoff.Initial, Runtime: rp}, fmt.Errorf("user namespace: %w", err)
		}
	}
	sbCfg, err := containerconfig.SandboxConfig(pod, sb.Metadata.GetAttempt(), s.Node, userns)
	if err != nil {
		return res, err
	}
	var podIPs []string
	if pod.Spec.HostNetwork {
		podIPs = s.HostIPs
	} else if sb.Network != nil && sb.Network.Ip != "" {
		podIPs = append(podIPs, sb.Network.Ip)
		for _, a := range sb.Network.AdditionalIps {
			podIPs = append(podIPs, a.Ip)
		}
	}
	sc := &podSync{s: s, pod: pod, rp: rp, sbID: sb.Id, sbCfg: sbCfg, userns: userns, podIPs: podIPs, vols: vols, acted: created}
	return sc.run(ctx)
}

type podSync struct {
	s       *Syncer
	pod     *v1.Pod
	rp      *runtime.Pod
	sbID    string
	sbCfg   *runtimeapi.PodSandboxConfig
	userns  *runtimeapi.UserNamespace // the sandbox's, for every container
	podIPs  []string
	vols    map[string]containerconfig.HostVolume
	requeue time.Duration
	errs    []error
	// acted is set once this sync asked the runtime to change something;
	// otherwise rp, read at the sync's start, is still what it holds.
	acted bool
}

func (p *podSync) latest(name string) *runtime.Container {
	for _, c := range p.rp.Containers {
		if c.Name == name && c.SandboxID == p.sbID {
			return c
		}
	}
	return nil
}

func (p *podSync) wait(d time.Duration) {
	if d > 0 && (p.requeue == 0 || d < p.requeue) {
		p.requeue = d
	}
}

func (p *podSync) run(ctx context.Context) (Result, error) {
	pod := p.pod
	// Once a regular container exists, initialization is over, even if the
	// init containers were garbage-collected since (upstream does the same).
	appCreated := false
	for _, c := range pod.Spec.Containers {
		appCreated = appCreated || p.latest(c.Name) != nil
	}
	// Init containers, in order; sidecars are started and kept running.
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		l := p.latest(c.Name)
		if !status.IsSidecar(c) && appCreated {
			continue
		}
		if status.IsSidecar(c) {
			if l == nil || l.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				if !p.start(ctx, c, true, l) {
					return p.result()
				}
			}
			continue
		}
		switch {
		case l == nil:
			p.start(ctx, c, true, nil)
			return p.result()
		case l.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING, l.Status.State == runtimeapi.ContainerState_CONTAINER_CREATED:
			return p.result() // wait for it
		case l.Status.ExitCode == 0:
			continue
		case status.ShouldRestart(c, pod.Spec.RestartPolicy, l.Status.ExitCode):
			p.start(ctx, c, true, l)
			return p.result()
		default:
			res, err := p.s.finish(ctx, pod, p.rp, Result{})
			return res, errors.Join(append(p.errs, err)...)
		}
	}
	done := 0
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		l := p.latest(c.Name)
		switch {
		case l == nil:
			p.start(ctx, c, false, nil)
		case l.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
			if l.Hash != 0 && l.Hash != runtime.HashContainer(c) {
				p.s.event(ref(pod, c, false), v1.EventTypeNormal, "Killing", "Container %s definition changed, will be restarted", c.Name)
				p.acted = true
				p.errs = append(p.errs, p.s.stopContainer(ctx, pod, c, l, gracePeriod(pod)))
				p.wait(time.Second)
			}
		case l.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED:
			if status.ShouldRestart(c, pod.Spec.RestartPolicy, l.Status.ExitCode) {
				p.start(ctx, c, false, l)
			} else {
				done++
			}
		default: // created but never started, or unknown: replace it
			p.acted = true
			_ = p.s.RT.RemoveContainer(ctx, l.Status.Id)
			p.wait(time.Second)
		}
	}
	if done == len(pod.Spec.Containers) && pod.Spec.RestartPolicy != v1.RestartPolicyAlways {
		res, err := p.s.finish(ctx, pod, p.rp, Result{})
		return res, errors.Join(append(p.errs, err)...)
	}
	return p.result()
}

// result re-reads the runtime so the status reflects what this sync
// started (a sync that changed nothing keeps what it read at its start),
// and collects the Pod's dead containers and sandboxes.
func (p *podSync) result() (Result, error) {
	rp := p.rp
	nrp, err := rp, error(nil)
	if p.acted {
		nrp, err = p.s.RT.GetPod(context.Background(), p.pod.UID)
	}
	if err == nil {
		rp = nrp
		// Re-read only when something was removed: a Pod's first syncs
		// (what start latency measures) never prune.
		n, err := gc.Prune(context.Background(), p.s.RT, rp)
		if err != nil {
			p.s.Log.Debug("gc", zap.Error(err))
		} else if n > 0 {
			if nrp, err := p.s.RT.GetPod(context.Background(), p.pod.UID); err == nil {
				rp = nrp
			}
		}
	}
	return Result{Requeue: p.requeue, Runtime: rp}, errors.Join(p.errs...)
}

// start starts c unless it is in back-off; it tells whether c now runs.
func (p *podSync) start(ctx context.Context, c *v1.Container, init bool, last *runtime.Container) bool {
	s, pod := p.s, p.pod
	if last != nil && last.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
		key := backoff.Key(pod, c)
		ts := time.Unix(0, last.Status.FinishedAt)
		if s.Backoff.IsInBackOffSince(key, ts) {
			d := s.Backoff.Get(key)
			s.event(ref(pod, c, init), v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, formatPod(pod))
			s.setReason(pod.UID, c.Name, &status.Reason{Reason: status.CrashLoopBackOff,
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", d, c.Name, formatPod(pod))})
			p.wait(time.Until(ts.Add(d)) + 100*time.Millisecond)
			return false
		}
		s.Backoff.Next(key, ts)
	}
	p.acted = true
	if err := s.startContainer(ctx, p, c, init); err != nil {
		p.errs = append(p.errs, err)
		p.wait(time.Second)
		return false
	}
	s.setReason(pod.UID, c.Name, nil)
	return true
}

func (s *Syncer) startContainer(ctx context.Context, p *podSync, c *v1.Container, init bool) error {
	pod := p.pod
	r := ref(pod, c, init)
	fail := func(reason string, err error) error {
		s.setReason(pod.UID, c.Name, &status.Reason{Reason: reason, Message: err.Error()})
		return fmt.Errorf("container %s: %w", c.Name, err)
	}
	imageRef, img, err := s.ensureImage(ctx, pod, c, r)
	if err != nil {
		reason := status.ErrImagePull
		switch {
		case errors.Is(err, ErrImagePullBackOff):
			reason = status.ImagePullBackOff
		case errors.Is(err, ErrImageNeverPull):
			reason = "ErrImageNeverPull"
		case errors.Is(err, ErrInvalidImageName):
			reason = "InvalidImageName"
		}
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %s", reason)
		return fail(reason, err)
	}
	if img == nil { // the status after a pull failed: read it again, as upstream's getImageUser does
		st, err := s.RT.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: imageRef}, false)
		if err != nil {
			s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
			return fail(status.CreateConfigErr, err)
		}
		img = st.GetImage()
	}
	user := containerconfig.ImageUserOf(img)
	if err := containerconfig.VerifyRunAsNonRoot(pod, c, user); err != nil {
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return fail(status.CreateConfigErr, err)
	}
	env, err := containerconfig.Env(ctx, s.Sources, pod, c, containerconfig.PodEnv{NodeName: s.Node.Name, HostIPs: s.HostIPs,
		PodIPs: p.podIPs, NodeAllocatable: s.Allocatable})
	if err != nil {
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return fail(status.CreateConfigErr, err)
	}
	restarts := 0
	if l := p.rp.Latest(c.Name); l != nil {
		restarts = l.RestartCount + 1
	}
	cfg, err := containerconfig.ContainerConfig(s.Host, containerconfig.ContainerInput{Pod: pod, Container: c,
		RestartCount: restarts, Env: env, ImageRef: imageRef, ImageUser: user, Volumes: p.vols, PodIPs: p.podIPs, Node: s.Node,
		UserNamespace: p.userns})
	if err != nil {
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return fail(status.CreateConfigErr, err)
	}
	if err := s.Host.MkdirAll(filepath.Join(p.sbCfg.LogDirectory, c.Name), 0o755); err != nil {
		return fail(status.CreateContainerErr, err)
	}
	id, err := s.RT.CreateContainer(ctx, p.sbID, cfg, p.sbCfg)
	if err != nil {
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return fail(status.CreateContainerErr, err)
	}
	s.event(r, v1.EventTypeNormal, "Created", "Container created")
	if err := s.RT.StartContainer(ctx, id); err != nil {
		s.event(r, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return fail(status.RunContainerErr, err)
	}
	s.event(r, v1.EventTypeNormal, "Started", "Container started")
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := s.runHook(ctx, pod, id, p.podIPs, c.Lifecycle.PostStart, gracePeriod(pod)); err != nil {
			s.event(r, v1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %s", msg)
			_ = s.RT.StopContainer(ctx, id, gracePeriod(pod))
			return fail("PostStartHookError", err)
		}
	}
	return nil
}

// createSandbox runs a new sandbox; it returns its ID and the Pod's user
// namespace, which its containers get too.
func (s *Syncer) createSandbox(ctx context.Context, pod *v1.Pod, rp *runtime.Pod) (string, *runtimeapi.UserNamespace, error) {
	failed := func(err error) {
		s.event(ref(pod, nil, false), v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
	}
	var attempt uint32
	if len(rp.Sandboxes) > 0 {
		attempt = rp.Sandboxes[0].Metadata.GetAttempt() + 1
	}
	// The handler first: whether the Pod can have its own user namespace
	// depends on it.
	handler := ""
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		handler = *rc
		if s.RuntimeClassHandler != nil {
			h, err := s.RuntimeClassHandler(ctx, *rc)
			if err != nil {
				failed(err)
				return "", nil, fmt.Errorf("runtime class %q: %w", *rc, err)
			}
			handler = h
		}
	}
	userns, err := s.UserNS.GetOrCreate(ctx, pod, handler)
	if err != nil {
		failed(err)
		return "", nil, fmt.Errorf("user namespace: %w", err)
	}
	cfg, err := containerconfig.SandboxConfig(pod, attempt, s.Node, userns)
	if err != nil {
		failed(err)
		return "", nil, err
	}
	if err := s.Host.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return "", nil, fmt.Errorf("pod log dir: %w", err)
	}
	id, err := s.RT.RunPodSandbox(ctx, cfg, handler)
	if err != nil {
		failed(err)
		return "", nil, fmt.Errorf("run sandbox: %w", err)
	}
	return id, userns, nil
}

// gracePeriod is the Pod's current termination grace in seconds.
func gracePeriod(pod *v1.Pod) int64 {
	if pod.DeletionGracePeriodSeconds != nil {
		return *pod.DeletionGracePeriodSeconds
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return v1.DefaultTerminationGracePeriodSeconds
}

// finish stops every container and the sandbox of a Pod that will run no more.
func (s *Syncer) finish(ctx context.Context, pod *v1.Pod, rp *runtime.Pod, res Result) (Result, error) {
	res.Terminal = true
	res.Runtime = rp
	if !rp.Running() {
		return res, nil // nothing to stop: rp, just read, stays current
	}
	err := s.KillPod(ctx, pod, rp, gracePeriod(pod))
	if nrp, gerr := s.RT.GetPod(ctx, pod.UID); gerr == nil {
		res.Runtime = nrp
	}
	return res, err
}

// KillPod runs preStop hooks and stops all containers within grace seconds,
// then stops the sandboxes. pod may be a stand-in built from runtime labels.
func (s *Syncer) KillPod(ctx context.Context, pod *v1.Pod, rp *runtime.Pod, grace int64) error {
	err := s.killContainers(ctx, pod, rp, grace)
	for _, sb := range rp.Sandboxes {
		if sb.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			if serr := s.RT.StopPodSandbox(ctx, sb.Id); serr != nil {
				err = errors.Join(err, fmt.Errorf("stop sandbox %s: %w", sb.Id, serr))
			}
		}
	}
	return err
}

func (s *Syncer) killContainers(ctx context.Context, pod *v1.Pod, rp *runtime.Pod, grace int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(rp.Containers))
	for _, l := range rp.Containers {
		if l.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING && l.Status.State != runtimeapi.ContainerState_CONTAINER_CREATED {
			continue
		}
		c := specOf(pod, l.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.stopContainer(ctx, pod, c, l, grace)
		}()
	}
	wg.Wait()
	close(errs)
	var err error
	for e := range errs {
		err = errors.Join(err, e)
	}
	return err
}

func specOf(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return &v1.Container{Name: name}
}

// minGrace is what a container gets after its preStop hook, as upstream.
const minGrace = 2

func (s *Syncer) stopContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, l *runtime.Container, grace int64) error {
	return s.stopContainerFor(ctx, pod, c, l, grace, "Stopping container "+c.Name)
}

// KillContainer stops a container that failed its liveness or startup
// probe; the Pod's next sync restarts it as its restartPolicy says.
func (s *Syncer) KillContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, containerID, why string) error {
	rp, err := s.RT.GetPod(ctx, pod.UID)
	if err != nil {
		return err
	}
	for _, l := range rp.Containers {
		if l.Status.Id == containerID && l.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			return s.stopContainerFor(ctx, pod, c, l, gracePeriod(pod), why)
		}
	}
	return nil
}

func (s *Syncer) stopContainerFor(ctx context.Context, pod *v1.Pod, c *v1.Container, l *runtime.Container, grace int64, why string) error {
	s.event(ref(pod, c, isInit(pod, c.Name)), v1.EventTypeNormal, "Killing", "%s", why)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 && l.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
		start := s.now()
		var ips []string
		if rp, err := s.RT.GetPod(ctx, pod.UID); err == nil {
			if sb := rp.ActiveSandbox(); sb != nil && sb.Network != nil {
				ips = []string{sb.Network.Ip}
			}
		}
		if msg, err := s.runHook(ctx, pod, l.Status.Id, ips, c.Lifecycle.PreStop, grace); err != nil {
			s.event(ref(pod, c, false), v1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %s", msg)
		}
		grace -= int64(s.now().Sub(start).Seconds())
		if grace < minGrace {
			grace = minGrace
		}
	}
	if err := s.RT.StopContainer(ctx, l.Status.Id, grace); err != nil {
		return fmt.Errorf("stop container %s: %w", c.Name, err)
	}
	return nil
}

func isInit(pod *v1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// RemovePod removes everything the runtime holds for a Pod that is gone,
// and its files under the root dir.
func (s *Syncer) RemovePod(ctx context.Context, rp *runtime.Pod) error {
	var err error
	for _, sb := range rp.Sandboxes {
		if rerr := s.RT.RemovePodSandbox(ctx, sb.Id); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	for _, c := range rp.Containers {
		_ = s.RT.RemoveContainer(ctx, c.Status.Id) // gone with its sandbox already, usually
	}
	if s.Volumes != nil && rp.UID != "" {
		if terr := s.Volumes.Teardown(rp.UID); terr != nil {
			return errors.Join(err, terr) // removing the directory now would reach into a mount
		}
	}
	if rp.UID != "" {
		// Its processes are gone (KillPod came first): its IDs may go to
		// another Pod.
		s.UserNS.Release(rp.UID)
		if s.Cgroups != nil {
			if cerr := s.Cgroups.RemovePod(rp.UID); cerr != nil {
				s.Log.Info("pod cgroup not removed yet", zap.String("uid", string(rp.UID)), zap.Error(cerr))
			}
		}
	}
	if s.Node.RootDir != "" && rp.UID != "" {
		_ = os.RemoveAll(filepath.Join(s.Node.RootDir, "pods", string(rp.UID)))
	}
	s.Forget(rp.UID)
	return err
}
