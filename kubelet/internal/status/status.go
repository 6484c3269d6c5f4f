// Package status computes a Pod's status from its spec, its previous status
// and what the runtime reports, as the upstream kubelet's
// generateAPIPodStatus/getPhase and pkg/kubelet/status compute it.
package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// Waiting reasons, as upstream spells them.
const (
	ContainerCreating   = "ContainerCreating"
	PodInitializing     = "PodInitializing"
	CrashLoopBackOff    = "CrashLoopBackOff"
	ErrImagePull        = "ErrImagePull"
	ImagePullBackOff    = "ImagePullBackOff"
	CreateContainerErr  = "CreateContainerError"
	CreateConfigErr     = "CreateContainerConfigError"
	RunContainerErr     = "RunContainerError"
	PodCompleted        = "PodCompleted"
	PodFailed           = "PodFailed"
	PodSandboxNotReady  = "PodSandboxNotReady"
	ContainersNotReady  = "ContainersNotReady"
	ContainersNotInit   = "ContainersNotInitialized"
	ReadinessGatesNotOK = "ReadinessGatesNotReady"
)

// Reason is why a container is not running after the last sync (upstream's reasonCache).
type Reason struct{ Reason, Message string }

// Input is everything a status is computed from.
type Input struct {
	Pod         *v1.Pod // spec and previous status
	Runtime     *runtime.Pod
	RuntimeName string            // prefix of container IDs, e.g. containerd
	Reasons     map[string]Reason // by container name
	HostIPs     []string
	Terminal    bool // the worker has finished the Pod: no container will run again
	Now         time.Time
	// Probe gives a container's started and ready flags from its probes;
	// nil means running is started and ready.
	Probe func(c *v1.Container, containerID string, running bool) (started, ready bool)
}

// Compute returns the Pod's new status.
func Compute(in Input) v1.PodStatus {
	pod := in.Pod
	old := pod.Status
	s := v1.PodStatus{
		ObservedGeneration: pod.Generation,
		QOSClass:           containerconfig.QOS(pod),
		Conditions:         nil,
		Message:            old.Message,
		Reason:             old.Reason,
		StartTime:          old.StartTime,
		Resize:             old.Resize,
	}
	if s.StartTime == nil {
		t := metav1.NewTime(in.Now)
		s.StartTime = &t
	}
	for _, ip := range in.HostIPs {
		s.HostIPs = append(s.HostIPs, v1.HostIP{IP: ip})
	}
	if len(in.HostIPs) > 0 {
		s.HostIP = in.HostIPs[0]
	}
	s.PodIPs = podIPs(pod, in)
	if len(s.PodIPs) > 0 {
		s.PodIP = s.PodIPs[0].IP
	}
	hasInit := len(pod.Spec.InitContainers) > 0
	s.InitContainerStatuses = containerStatuses(in, pod.Spec.InitContainers, old.InitContainerStatuses, false, true)
	s.ContainerStatuses = containerStatuses(in, pod.Spec.Containers, old.ContainerStatuses, hasInit, false)
	// Regular containers' statuses are sorted by name, as upstream's
	// SortedContainerStatuses; init containers keep spec order.
	sort.SliceStable(s.ContainerStatuses, func(i, j int) bool { return s.ContainerStatuses[i].Name < s.ContainerStatuses[j].Name })
	initialized := initDone(pod, s.InitContainerStatuses)
	all := append(append([]v1.ContainerStatus{}, s.InitContainerStatuses...), s.ContainerStatuses...)
	s.Phase = phase(pod, all, in.Terminal, initialized || hadCondition(old, v1.PodInitialized))
	if old.Phase == v1.PodSucceeded || old.Phase == v1.PodFailed {
		s.Phase = old.Phase // a terminal phase never changes
	}
	s.Conditions = conditions(in, s, initialized)
	s.Resources = podResources(pod)
	return s
}

// podResources is the Pod-level resources status as upstream reports it
// (InPlacePodLevelResourcesVerticalScaling, on by default): the effective
// requests and limits of the whole Pod. (Upstream reads a running Pod's
// cgroup values back; with no resize they are these.)
func podResources(pod *v1.Pod) *v1.ResourceRequirements {
	r := pod.Spec.Resources.DeepCopy()
	if r == nil {
		r = &v1.ResourceRequirements{}
	}
	r.Requests = resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	r.Limits = resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})
	return r
}

func hadCondition(s v1.PodStatus, t v1.PodConditionType) bool {
	for _, c := range s.Conditions {
		if c.Type == t && c.Status == v1.ConditionTrue {
			return true
		}
	}
	return false
}

func podIPs(pod *v1.Pod, in Input) []v1.PodIP {
	var out []v1.PodIP
	if pod.Spec.HostNetwork {
		for _, ip := range in.HostIPs {
			out = append(out, v1.PodIP{IP: ip})
		}
		return out
	}
	sb := in.Runtime.ActiveSandbox()
	if sb == nil || sb.Network == nil || sb.Network.Ip == "" {
		return pod.Status.PodIPs // keep what was reported while the sandbox is gone
	}
	out = append(out, v1.PodIP{IP: sb.Network.Ip})
	for _, a := range sb.Network.AdditionalIps {
		out = append(out, v1.PodIP{IP: a.Ip})
	}
	return out
}

// IsSidecar tells a restartable init container.
func IsSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

func (in Input) containerID(id string) string {
	name := in.RuntimeName
	if name == "" {
		name = "cri"
	}
	return name + "://" + id
}

func toState(in Input, c *runtime.Container) (v1.ContainerState, bool) {
	st := c.Status
	switch st.State {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return v1.ContainerState{Running: &v1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(0, st.StartedAt))}}, true
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
			ExitCode: st.ExitCode, Reason: st.Reason, Message: st.Message,
			StartedAt: metav1.NewTime(time.Unix(0, st.StartedAt)), FinishedAt: metav1.NewTime(time.Unix(0, st.FinishedAt)),
			ContainerID: in.containerID(st.Id)}}, false
	}
	return v1.ContainerState{Waiting: &v1.ContainerStateWaiting{}}, false
}

func containerStatuses(in Input, specs []v1.Container, old []v1.ContainerStatus, hasInit, isInit bool) []v1.ContainerStatus {
	if len(specs) == 0 {
		return nil
	}
	olds := map[string]v1.ContainerStatus{}
	for _, o := range old {
		olds[o.Name] = o
	}
	def := ContainerCreating
	if hasInit {
		def = PodInitializing
	}
	out := make([]v1.ContainerStatus, 0, len(specs))
	for i := range specs {
		spec := &specs[i]
		st := v1.ContainerStatus{Name: spec.Name, Image: spec.Image, State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: def}}}
		f := false
		st.Started = &f
		if o, ok := olds[spec.Name]; ok {
			if o.State.Terminated != nil {
				st = *o.DeepCopy()
			} else {
				st.RestartCount, st.LastTerminationState = o.RestartCount, o.LastTerminationState
			}
		}
		var insts []*runtime.Container
		if in.Runtime != nil {
			for _, c := range in.Runtime.Containers { // newest first
				if c.Name == spec.Name {
					insts = append(insts, c)
				}
			}
		}
		if len(insts) > 0 {
			latest := insts[0]
			state, running := toState(in, latest)
			st.State = state
			st.LastTerminationState = v1.ContainerState{}
			if len(insts) > 1 {
				st.LastTerminationState, _ = toState(in, insts[1])
			}
			st.RestartCount = int32(latest.RestartCount)
			st.ContainerID = in.containerID(latest.Status.Id)
			st.ImageID = latest.Status.ImageRef
			st.Image = spec.Image
			started, ready := running, running
			if in.Probe != nil {
				started, ready = in.Probe(spec, latest.Status.Id, running)
			}
			st.Ready, st.Started = ready, &started
			if running || state.Terminated != nil {
				st.Resources = spec.Resources.DeepCopy()
				st.AllocatedResources = spec.Resources.Requests
			}
			if u := latest.Status.GetUser().GetLinux(); u != nil {
				st.User = &v1.ContainerUser{Linux: &v1.LinuxContainerUser{UID: u.Uid, GID: u.Gid, SupplementalGroups: u.SupplementalGroups}}
			}
		}
		st.VolumeMounts = volumeMounts(spec)
		if isInit && len(insts) == 0 && !IsSidecar(spec) && st.State.Waiting != nil && anyRegularCreated(in) {
			st.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: "Completed", ExitCode: 0,
				Message: "Unable to get init container status from container runtime and pod has been initialized, treat it as exited normally"}}
		}
		if isInit && st.State.Terminated != nil && st.State.Terminated.ExitCode == 0 {
			// upstream's prober manager: a completed init container is ready, a stopped sidecar is not
			st.Ready = !IsSidecar(spec)
			out = append(out, st)
			continue
		}
		if r, ok := in.Reasons[spec.Name]; ok && st.State.Running == nil {
			if st.State.Terminated != nil {
				st.LastTerminationState = st.State
			}
			st.State = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: r.Reason, Message: r.Message}}
		}
		out = append(out, st)
	}
	return out
}

func anyRegularCreated(in Input) bool {
	if in.Runtime == nil {
		return false
	}
	for _, c := range in.Pod.Spec.Containers {
		if in.Runtime.Latest(c.Name) != nil {
			return true
		}
	}
	return false
}

// volumeMounts is the mounts' status (RecursiveReadOnlyMounts, GA upstream):
// read-only mounts report recursive read-only as Disabled, which is what a
// mount without recursiveReadOnly gets.
func volumeMounts(c *v1.Container) []v1.VolumeMountStatus {
	var out []v1.VolumeMountStatus
	for _, m := range c.VolumeMounts {
		vs := v1.VolumeMountStatus{Name: m.Name, MountPath: m.MountPath, ReadOnly: m.ReadOnly}
		if m.ReadOnly {
			mode := v1.RecursiveReadOnlyDisabled
			if m.RecursiveReadOnly != nil && *m.RecursiveReadOnly == v1.RecursiveReadOnlyEnabled {
				mode = v1.RecursiveReadOnlyEnabled
			}
			vs.RecursiveReadOnly = &mode
		}
		out = append(out, vs)
	}
	return out
}

// ShouldRestart is podutil.ContainerShouldRestart without per-container rules.
func ShouldRestart(c *v1.Container, policy v1.RestartPolicy, exitCode int32) bool {
	if c.RestartPolicy != nil {
		switch *c.RestartPolicy {
		case v1.ContainerRestartPolicyAlways:
			return true
		case v1.ContainerRestartPolicyOnFailure:
			return exitCode != 0
		case v1.ContainerRestartPolicyNever:
			return false
		}
	}
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

func find(sts []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range sts {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// phase is upstream's getPhase (with ContainerRestartRules on).
func phase(pod *v1.Pod, info []v1.ContainerStatus, terminal, initialized bool) v1.PodPhase {
	pendingInit, pendingSidecar, failedInitNotRestartable := 0, 0, 0
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if IsSidecar(c) {
			continue
		}
		cs, ok := find(info, c.Name)
		switch {
		case !ok:
			pendingInit++
		case cs.State.Running != nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if ec := cs.State.Terminated.ExitCode; ec != 0 && !ShouldRestart(c, pod.Spec.RestartPolicy, ec) {
				failedInitNotRestartable++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 && !ShouldRestart(c, pod.Spec.RestartPolicy, t.ExitCode) {
					failedInitNotRestartable++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	unknown, running, waiting, stopped, stoppedNotRestartable, succeeded := 0, 0, 0, 0, 0, 0
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !IsSidecar(c) {
			continue
		}
		cs, ok := find(info, c.Name)
		switch {
		case !ok:
			unknown++
		case cs.State.Running != nil:
			if cs.Started == nil || !*cs.Started {
				pendingSidecar++
			}
			running++
		case cs.State.Terminated != nil:
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated == nil {
				pendingSidecar++
				waiting++
			}
		default:
			pendingSidecar++
			unknown++
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs, ok := find(info, c.Name)
		switch {
		case !ok:
			unknown++
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			ec := cs.State.Terminated.ExitCode
			if !ShouldRestart(c, pod.Spec.RestartPolicy, ec) {
				stoppedNotRestartable++
			}
			if ec == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				stopped++
				if !ShouldRestart(c, pod.Spec.RestartPolicy, t.ExitCode) {
					stoppedNotRestartable++
				}
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInitNotRestartable > 0 {
		return v1.PodFailed
	}
	switch {
	case pendingInit > 0 || (pendingSidecar > 0 && !initialized), waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if terminal {
			if stopped == succeeded {
				return v1.PodSucceeded
			}
			return v1.PodFailed
		}
		if stopped != stoppedNotRestartable {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		return v1.PodFailed
	}
	return v1.PodPending
}

func initDone(pod *v1.Pod, sts []v1.ContainerStatus) bool {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs, ok := find(sts, c.Name)
		if !ok {
			return false
		}
		if IsSidecar(c) {
			if cs.Started == nil || !*cs.Started {
				return false
			}
			continue
		}
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

func conditions(in Input, s v1.PodStatus, initialized bool) []v1.PodCondition {
	pod := in.Pod
	now := metav1.NewTime(in.Now)
	var conds []v1.PodCondition
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case v1.PodReadyToStartContainers, v1.PodInitialized, v1.ContainersReady, v1.PodReady, v1.PodScheduled:
			// the kubelet's own (PodScheduled too, as upstream's generateAPIPodStatus)
		default:
			conds = append(conds, c) // PodScheduled and conditions others own
		}
	}
	cond := func(t v1.PodConditionType, ok bool, reason, msg string) v1.PodCondition {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: now,
			ObservedGeneration: pod.Generation}
		if ok {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, "", ""
		}
		for _, o := range pod.Status.Conditions {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	sandboxReady := in.Runtime.ActiveSandbox() != nil
	sbMsg := "pod sandbox is not ready"
	if in.Runtime == nil || len(in.Runtime.Sandboxes) == 0 {
		sbMsg = "no pod sandbox exists"
	}
	conds = append(conds, cond(v1.PodReadyToStartContainers, sandboxReady, PodSandboxNotReady, sbMsg))

	terminalDone := s.Phase == v1.PodSucceeded || s.Phase == v1.PodFailed
	// Initialized
	var notInit []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs, _ := find(s.InitContainerStatuses, c.Name)
		if IsSidecar(c) {
			if cs.Started == nil || !*cs.Started {
				notInit = append(notInit, c.Name)
			}
		} else if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			notInit = append(notInit, c.Name)
		}
	}
	initOK := len(notInit) == 0 || initialized || hadCondition(pod.Status, v1.PodInitialized) && !(s.Phase == v1.PodPending)
	if len(notInit) == 0 {
		initOK = true
	}
	initMsg := ""
	if !initOK {
		initMsg = fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " "))
	}
	initReason := ""
	if !initOK {
		initReason = ContainersNotInit
	}
	initCond := cond(v1.PodInitialized, initOK, initReason, initMsg)
	if terminalDone && s.Phase == v1.PodSucceeded {
		// upstream: a Succeeded Pod is initialized, with reason PodCompleted
		initCond = cond(v1.PodInitialized, true, "", "")
		initCond.Reason = PodCompleted
	}
	conds = append(conds, initCond)

	// ContainersReady and Ready
	var unready []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if !IsSidecar(c) {
			continue
		}
		if cs, ok := find(s.InitContainerStatuses, c.Name); !ok || !cs.Ready {
			unready = append(unready, c.Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		if cs, ok := find(s.ContainerStatuses, c.Name); !ok || !cs.Ready {
			unready = append(unready, c.Name)
		}
	}
	ready := len(unready) == 0
	reason, msg := "", ""
	switch {
	case terminalDone && s.Phase == v1.PodSucceeded:
		ready, reason = false, PodCompleted
	case terminalDone && s.Phase == v1.PodFailed:
		ready, reason = false, PodFailed
	case !ready:
		reason = ContainersNotReady
		msg = fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	conds = append(conds, cond(v1.ContainersReady, ready, reason, msg))
	podReady := ready
	rmsg := msg
	rreason := reason
	if ready {
		var gates []string
		for _, g := range pod.Spec.ReadinessGates {
			okGate := false
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == v1.ConditionTrue {
					okGate = true
				}
			}
			if !okGate {
				gates = append(gates, string(g.ConditionType))
			}
		}
		if len(gates) > 0 {
			podReady, rreason = false, ReadinessGatesNotOK
			rmsg = fmt.Sprintf("corresponding condition of pod readiness gate \"%s\" does not exist.", gates[0])
		}
	}
	conds = append(conds, cond(v1.PodReady, podReady, rreason, rmsg))
	conds = append(conds, cond(v1.PodScheduled, true, "", ""))
	order := map[v1.PodConditionType]int{v1.PodReadyToStartContainers: 0, v1.PodInitialized: 1, v1.PodReady: 2, v1.ContainersReady: 3, v1.PodScheduled: 4}
	sort.SliceStable(conds, func(i, j int) bool { return rank(order, conds[i].Type) < rank(order, conds[j].Type) })
	return conds
}

func rank(order map[v1.PodConditionType]int, t v1.PodConditionType) int {
	if r, ok := order[t]; ok {
		return r
	}
	return 99
}
