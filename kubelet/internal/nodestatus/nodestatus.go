// Package nodestatus registers the Node, keeps its status current (on change
// and every report period), renews its Lease and re-registers a deleted Node.
package nodestatus

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/clock"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient"
)

// Machine is what the node reports about itself; read from the host by
// ReadMachine, faked in tests.
type Machine struct {
	CPUs            int64
	MemoryBytes     int64
	EphemeralBytes  int64
	MachineID       string
	SystemUUID      string
	BootID          string
	KernelVersion   string
	OSImage         string
	Hostname        string
	DefaultAddrs    []string // used when --node-ip is not given
	KubeletPort     int32
	Architecture    string
	OperatingSystem string
}

// Config configures the Node this kubelet registers.
type Config struct {
	NodeName       string
	NodeIPs        []net.IP
	Labels         map[string]string
	Taints         []v1.Taint
	PodCIDR        string
	MaxPods        int32
	SystemReserved map[string]string
	KubeReserved   map[string]string
	EvictionHard   map[string]string
	KubeletVersion string
	UpdateFreq     time.Duration
	ReportFreq     time.Duration
	LeaseDuration  int32
}

// LeaseNamespace holds the node Leases.
const LeaseNamespace = "kube-node-lease"

// Controller owns the Node object and its Lease.
type Controller struct {
	Cfg     Config
	Client  apiclient.Interface
	Runtime internalapi.RuntimeService
	Machine Machine
	Log     *zap.Logger
	Clock   clock.Clock
	// RuntimeStatus, when set, is given every CRI Status response read for
	// the node's status, so others need not ask the runtime themselves.
	RuntimeStatus func(*runtimeapi.StatusResponse)
	// Recorder records the Node's condition Events; nil records none.
	Recorder record.EventRecorder
	// Images lists the runtime's images for status.images (CRI ListImages);
	// nil reports none. Read at most every 30 s, as upstream's image cache.
	Images func(context.Context) ([]*runtimeapi.Image, error)
	// Pressure observes the eviction signals and returns the pressure
	// conditions that hold (eviction.Manager.Synchronize); nil reports none.
	Pressure func(context.Context) []v1.NodeConditionType

	last       *v1.NodeStatus
	lastReport time.Time
	node       atomic.Pointer[v1.Node]

	imagesMu   sync.Mutex
	images     []v1.ContainerImage
	imagesRead time.Time
}

// Upstream's nodeStatusMaxImages default and MaxNamesPerImageInNodeStatus.
const (
	maxImages        = 50
	maxNamesPerImage = 5
	imagesPeriod     = 30 * time.Second
)

// nodeImages is upstream's Images setter: the largest images first (ties by
// ID, descending), at most 50, each with at most 5 names, digests first.
func (c *Controller) nodeImages(ctx context.Context) []v1.ContainerImage {
	c.imagesMu.Lock()
	defer c.imagesMu.Unlock()
	if c.images != nil && c.now().Sub(c.imagesRead) < imagesPeriod {
		return c.images
	}
	imgs, err := c.Images(ctx)
	if err != nil {
		c.Log.Warn("list images for the node status", zap.Error(err))
		return c.images
	}
	sorted := slices.Clone(imgs)
	slices.SortStableFunc(sorted, func(a, b *runtimeapi.Image) int {
		if a.GetSize() != b.GetSize() {
			return cmp.Compare(b.GetSize(), a.GetSize())
		}
		return cmp.Compare(b.GetId(), a.GetId())
	})
	out := []v1.ContainerImage{}
	for _, img := range sorted[:min(len(sorted), maxImages)] {
		names := append(slices.Clone(img.GetRepoDigests()), img.GetRepoTags()...)
		out = append(out, v1.ContainerImage{Names: names[:min(len(names), maxNamesPerImage)], SizeBytes: int64(img.GetSize())})
	}
	c.images, c.imagesRead = out, c.now()
	return out
}

// Allocatable is capacity less the reservations and hard-eviction
// thresholds, as upstream's node allocatable is computed.
func (c *Controller) Allocatable() v1.ResourceList {
	capacity := c.capacity()
	alloc := capacity.DeepCopy()
	sub := func(rn v1.ResourceName, q resource.Quantity) {
		if v, ok := alloc[rn]; ok {
			v.Sub(q)
			if v.Sign() < 0 {
				v = resource.MustParse("0")
			}
			alloc[rn] = v
		}
	}
	for _, m := range []map[string]string{c.Cfg.SystemReserved, c.Cfg.KubeReserved} {
		for k, v := range m {
			if q, err := resource.ParseQuantity(v); err == nil {
				sub(v1.ResourceName(k), q)
			}
		}
	}
	hard := c.Cfg.EvictionHard
	if hard == nil {
		hard = map[string]string{"memory.available": "100Mi", "nodefs.available": "10%"}
	}
	for sig, rn := range map[string]v1.ResourceName{"memory.available": v1.ResourceMemory, "nodefs.available": v1.ResourceEphemeralStorage} {
		v, ok := hard[sig]
		if !ok {
			continue
		}
		if pct, isPct := strings.CutSuffix(v, "%"); isPct {
			var f float64
			if _, err := fmt.Sscanf(pct, "%g", &f); err == nil {
				base := capacity[rn]
				sub(rn, *resource.NewQuantity(int64(float64(base.Value())*f/100), resource.BinarySI))
			}
		} else if q, err := resource.ParseQuantity(v); err == nil {
			sub(rn, q)
		}
	}
	return alloc
}

func (c *Controller) capacity() v1.ResourceList {
	m := c.Machine
	return v1.ResourceList{
		v1.ResourceCPU:              *resource.NewQuantity(m.CPUs, resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(m.MemoryBytes, resource.BinarySI),
		v1.ResourceEphemeralStorage: *resource.NewQuantity(m.EphemeralBytes, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(int64(c.Cfg.MaxPods), resource.DecimalSI),
		"hugepages-1Gi":             resource.MustParse("0"),
		"hugepages-2Mi":             resource.MustParse("0"),
	}
}

// Addresses are InternalIP(s) and Hostname.
func (c *Controller) Addresses() []v1.NodeAddress {
	var out []v1.NodeAddress
	ips := c.Cfg.NodeIPs
	if len(ips) > 0 {
		for _, ip := range ips {
			out = append(out, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip.String()})
		}
	} else {
		for _, a := range c.Machine.DefaultAddrs {
			out = append(out, v1.NodeAddress{Type: v1.NodeInternalIP, Address: a})
		}
	}
	return append(out, v1.NodeAddress{Type: v1.NodeHostName, Address: c.Cfg.NodeName})
}

// HostIPs are the node's InternalIPs, for Pod status.
func (c *Controller) HostIPs() []string {
	var out []string
	for _, a := range c.Addresses() {
		if a.Type == v1.NodeInternalIP {
			out = append(out, a.Address)
		}
	}
	return out
}

func (c *Controller) now() time.Time {
	if c.Clock == nil {
		return time.Now()
	}
	return c.Clock.Now()
}

// Status builds the Node status from the machine and the runtime.
func (c *Controller) Status(ctx context.Context, prev *v1.NodeStatus) v1.NodeStatus {
	m := c.Machine
	s := v1.NodeStatus{
		Capacity:        c.capacity(),
		Allocatable:     c.Allocatable(),
		Addresses:       c.Addresses(),
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: m.KubeletPort}},
		NodeInfo: v1.NodeSystemInfo{MachineID: m.MachineID, SystemUUID: m.SystemUUID, BootID: m.BootID,
			KernelVersion: m.KernelVersion, OSImage: m.OSImage, OperatingSystem: m.OperatingSystem,
			Architecture: m.Architecture, KubeletVersion: c.Cfg.KubeletVersion, KubeProxyVersion: ""},
	}
	ready, msg := true, ""
	if c.Runtime != nil {
		if v, err := c.Runtime.Version(ctx, "v1"); err == nil {
			s.NodeInfo.ContainerRuntimeVersion = v.RuntimeName + "://" + v.RuntimeVersion
		}
		rs, err := c.Runtime.Status(ctx, false)
		switch {
		case err != nil:
			ready, msg = false, fmt.Sprintf("container runtime status check may not have completed yet: %v", err)
		default:
			if c.RuntimeStatus != nil {
				c.RuntimeStatus(rs)
			}
			s.RuntimeHandlers, s.Features = runtimeFeatures(rs)
			for _, cond := range rs.GetStatus().GetConditions() {
				if (cond.Type == runtimeapi.RuntimeReady || cond.Type == runtimeapi.NetworkReady) && !cond.Status {
					ready = false
					what := "container runtime"
					if cond.Type == runtimeapi.NetworkReady {
						what = "container runtime network"
					}
					msg = fmt.Sprintf("%s not ready: %s=false reason:%s message:%s", what, cond.Type, cond.Reason, cond.Message)
				}
			}
		}
	} else {
		ready, msg = false, "container runtime is down"
	}
	now := metav1.NewTime(c.now())
	cond := func(t v1.NodeConditionType, st v1.ConditionStatus, reason, message string) v1.NodeCondition {
		nc := v1.NodeCondition{Type: t, Status: st, Reason: reason, Message: message, LastHeartbeatTime: now, LastTransitionTime: now}
		if prev != nil {
			for _, o := range prev.Conditions {
				if o.Type == t && o.Status == st {
					nc.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
		return nc
	}
	if c.Images != nil {
		s.Images = c.nodeImages(ctx)
	}
	var pressure []v1.NodeConditionType
	if c.Pressure != nil {
		pressure = c.Pressure(ctx)
	}
	under := func(t v1.NodeConditionType) bool { return slices.Contains(pressure, t) }
	// Upstream's MemoryPressureCondition, DiskPressureCondition and
	// PIDPressureCondition setters, with their reasons and messages.
	pick := func(t v1.NodeConditionType, onReason, onMsg, offReason, offMsg string) v1.NodeCondition {
		if under(t) {
			return cond(t, v1.ConditionTrue, onReason, onMsg)
		}
		return cond(t, v1.ConditionFalse, offReason, offMsg)
	}
	s.Conditions = []v1.NodeCondition{
		pick(v1.NodeMemoryPressure, "KubeletHasInsufficientMemory", "kubelet has insufficient memory available",
			"KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
		pick(v1.NodeDiskPressure, "KubeletHasDiskPressure", "kubelet has disk pressure",
			"KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
		pick(v1.NodePIDPressure, "KubeletHasInsufficientPID", "kubelet has insufficient PID available",
			"KubeletHasSufficientPID", "kubelet has sufficient PID available"),
	}
	if ready {
		s.Conditions = append(s.Conditions, cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"))
	} else {
		s.Conditions = append(s.Conditions, cond(v1.NodeReady, v1.ConditionFalse, "KubeletNotReady", msg))
	}
	c.recordTransitions(prev, s.Conditions)
	return s
}

// transitionEvents name the Event upstream's condition setters record when a
// condition becomes True or False.
var transitionEvents = map[v1.NodeConditionType][2]string{
	v1.NodeMemoryPressure: {"NodeHasInsufficientMemory", "NodeHasSufficientMemory"},
	v1.NodeDiskPressure:   {"NodeHasDiskPressure", "NodeHasNoDiskPressure"},
	v1.NodePIDPressure:    {"NodeHasInsufficientPID", "NodeHasSufficientPID"},
	v1.NodeReady:          {"NodeReady", "NodeNotReady"},
}

// recordTransitions records upstream's Node Events ("Node n1 status is now:
// NodeReady") for each condition that is new or changed its status.
func (c *Controller) recordTransitions(prev *v1.NodeStatus, conds []v1.NodeCondition) {
	if c.Recorder == nil {
		return
	}
	ref := c.NodeRef()
	for _, nc := range conds {
		names, ok := transitionEvents[nc.Type]
		if !ok {
			continue
		}
		if prev != nil {
			if old := conditionOf(prev, nc.Type); old != nil && old.Status == nc.Status {
				continue
			}
		}
		name := names[1]
		if nc.Status == v1.ConditionTrue {
			name = names[0]
		}
		c.Recorder.Eventf(ref, v1.EventTypeNormal, name, "Node %s status is now: %s", c.Cfg.NodeName, name)
	}
}

func conditionOf(s *v1.NodeStatus, t v1.NodeConditionType) *v1.NodeCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

// NodeRef is the reference upstream's kubelet records Node Events against:
// the node's name as its UID, no namespace.
func (c *Controller) NodeRef() *v1.ObjectReference {
	return &v1.ObjectReference{Kind: "Node", Name: c.Cfg.NodeName, UID: types.UID(c.Cfg.NodeName)}
}

// runtimeFeatures are the node's status.runtimeHandlers and status.features
// as upstream's RuntimeHandlers and NodeFeatures setters report them from
// the CRI Status: the scheduler and admission read them.
func runtimeFeatures(rs *runtimeapi.StatusResponse) ([]v1.NodeRuntimeHandler, *v1.NodeFeatures) {
	var handlers []v1.NodeRuntimeHandler
	for _, h := range rs.GetRuntimeHandlers() {
		rro, userns := h.GetFeatures().GetRecursiveReadOnlyMounts(), h.GetFeatures().GetUserNamespaces()
		handlers = append(handlers, v1.NodeRuntimeHandler{Name: h.GetName(),
			Features: &v1.NodeRuntimeHandlerFeatures{RecursiveReadOnlyMounts: &rro, UserNamespaces: &userns}})
	}
	var features *v1.NodeFeatures
	if f := rs.GetFeatures(); f != nil {
		sgp := f.GetSupplementalGroupsPolicy()
		features = &v1.NodeFeatures{SupplementalGroupsPolicy: &sgp}
	}
	return handlers, features
}

// Node is the object registered for this kubelet.
func (c *Controller) Node(ctx context.Context) *v1.Node {
	labels := map[string]string{
		v1.LabelHostname: c.Cfg.NodeName, v1.LabelOSStable: c.Machine.OperatingSystem, v1.LabelArchStable: c.Machine.Architecture,
		"beta.kubernetes.io/os": c.Machine.OperatingSystem, "beta.kubernetes.io/arch": c.Machine.Architecture,
	}
	for k, v := range c.Cfg.Labels {
		labels[k] = v
	}
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: c.Cfg.NodeName, Labels: labels,
		Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec: v1.NodeSpec{Taints: c.Cfg.Taints, PodCIDR: c.Cfg.PodCIDR}}
	if c.Cfg.PodCIDR != "" {
		n.Spec.PodCIDRs = []string{c.Cfg.PodCIDR}
	}
	n.Status = c.Status(ctx, nil)
	return n
}

// Register creates the Node, or adopts the existing one (merging our labels).
func (c *Controller) Register(ctx context.Context) error {
	n := c.Node(ctx)
	created, err := c.Client.Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err == nil {
		c.Log.Info("registered node", zap.String("node", created.Name))
		c.last = &created.Status
		c.node.Store(created)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("register node: %w", err)
	}
	existing, err := c.Client.Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get existing node: %w", err)
	}
	changed := false
	if existing.Labels == nil {
		existing.Labels = map[string]string{}
	}
	for k, v := range n.Labels {
		if existing.Labels[k] != v {
			existing.Labels[k], changed = v, true
		}
	}
	if changed {
		if _, err := c.Client.Nodes().Update(ctx, existing, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update existing node: %w", err)
		}
	}
	c.Log.Info("node already registered; adopted", zap.String("node", n.Name))
	return c.Update(ctx, true)
}

// Update writes the status when it changed or the report period passed.
func (c *Controller) Update(ctx context.Context, force bool) error {
	node, err := c.Client.Nodes().Get(ctx, c.Cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.Log.Info("node deleted; registering again")
		return c.Register(ctx)
	}
	if err != nil {
		return fmt.Errorf("get node: %w", err)
	}
	c.node.Store(node.DeepCopy())
	st := c.Status(ctx, &node.Status)
	if !force && c.now().Sub(c.lastReport) < c.Cfg.ReportFreq && sameIgnoringHeartbeats(&node.Status, &st) {
		return nil
	}
	node.Status.Capacity, node.Status.Allocatable = st.Capacity, st.Allocatable
	node.Status.Addresses, node.Status.NodeInfo, node.Status.DaemonEndpoints = st.Addresses, st.NodeInfo, st.DaemonEndpoints
	if st.RuntimeHandlers != nil || st.Features != nil { // not when the runtime did not answer
		node.Status.RuntimeHandlers, node.Status.Features = st.RuntimeHandlers, st.Features
	}
	if st.Images != nil {
		node.Status.Images = st.Images
	}
	node.Status.Conditions = mergeConditions(node.Status.Conditions, st.Conditions)
	updated, err := c.Client.Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update node status: %w", err)
	}
	c.last, c.lastReport = &updated.Status, c.now()
	c.node.Store(updated)
	return nil
}

// CachedNode is the Node as last read from or written to the API server
// (its labels, taints and status.features, for admission); nil before the
// first read.
func (c *Controller) CachedNode() *v1.Node { return c.node.Load() }

// mergeConditions replaces ours and keeps conditions others own.
func mergeConditions(old, ours []v1.NodeCondition) []v1.NodeCondition {
	mine := map[v1.NodeConditionType]bool{}
	for _, c := range ours {
		mine[c.Type] = true
	}
	out := append([]v1.NodeCondition{}, ours...)
	for _, c := range old {
		if !mine[c.Type] {
			out = append(out, c)
		}
	}
	return out
}

func sameIgnoringHeartbeats(a, b *v1.NodeStatus) bool {
	strip := func(s *v1.NodeStatus) v1.NodeStatus {
		c := *s.DeepCopy()
		var conds []v1.NodeCondition
		for _, x := range c.Conditions {
			if x.Type == v1.NodeReady || x.Type == v1.NodeMemoryPressure || x.Type == v1.NodeDiskPressure || x.Type == v1.NodePIDPressure {
				x.LastHeartbeatTime, x.LastTransitionTime = metav1.Time{}, metav1.Time{}
				conds = append(conds, x)
			}
		}
		c.Conditions = conds
		// What others write (volumes, config) is not ours to compare; what we
		// report (images, handlers, features) is compared only when we have it.
		c.VolumesAttached, c.VolumesInUse, c.Config, c.DeclaredFeatures = nil, nil, nil, nil
		if b.Images == nil {
			c.Images = nil
		}
		if b.RuntimeHandlers == nil && b.Features == nil {
			c.RuntimeHandlers, c.Features = nil, nil
		}
		return c
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// Run registers (retrying), then updates status every UpdateFreq and runs
// the Lease controller until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	for {
		err := c.Register(ctx)
		if err == nil {
			break
		}
		c.Log.Warn("register node", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	lr := &leaseRenewer{client: c.Client.Leases(LeaseNamespace), name: c.Cfg.NodeName, ns: LeaseNamespace,
		duration: c.Cfg.LeaseDuration, interval: 10 * time.Second, clock: clock.RealClock{}, prepare: c.setOwner,
		log: c.Log.Named("lease")}
	go lr.run(ctx)
	t := time.NewTicker(c.Cfg.UpdateFreq)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := c.Update(ctx, false); err != nil {
			c.Log.Warn("node status", zap.Error(err))
		}
	}
}

// setOwner makes the Node own its Lease, as upstream does, so deleting the
// Node deletes the Lease.
func (c *Controller) setOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) > 0 {
		return nil
	}
	n, err := c.Client.Nodes().Get(context.Background(), c.Cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil // the Lease is still renewed; the owner is set next time
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
	return nil
}

// ReadMachine reads the host's facts.
func ReadMachine(rootDir string, port int32) Machine {
	m := Machine{CPUs: int64(goruntime.NumCPU()), KubeletPort: port, Architecture: goruntime.GOARCH, OperatingSystem: goruntime.GOOS}
	m.MemoryBytes = memTotal()
	m.EphemeralBytes = diskBytes(rootDir)
	m.MachineID = readTrim("/etc/machine-id")
	m.SystemUUID = strings.ToLower(readTrim("/sys/class/dmi/id/product_uuid"))
	m.BootID = readTrim("/proc/sys/kernel/random/boot_id")
	m.KernelVersion = readTrim("/proc/sys/kernel/osrelease")
	m.OSImage = osImage()
	m.Hostname, _ = os.Hostname()
	m.DefaultAddrs = defaultAddrs()
	return m
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotal() int64 {
	for _, line := range strings.Split(readTrim("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

func osImage() string {
	for _, line := range strings.Split(readTrim("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

// defaultAddrs picks the address of the interface the default route uses,
// without sending anything (UDP connect only selects a source address).
func defaultAddrs() []string {
	conn, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return nil
	}
	defer conn.Close()
	return []string{conn.LocalAddr().(*net.UDPAddr).IP.String()}
}
