// Package cm keeps the kubelet's QoS and pod cgroups as upstream's container
// manager (pkg/kubelet/cm) builds them for the cgroupfs driver:
// <cgroupRoot>/kubepods limited to node allocatable, its burstable and
// besteffort tiers, and one pod<uid> cgroup per Pod with the Pod's limits, on
// cgroup v1 (one hierarchy per controller) and v2 (unified) alike.
package cm

import (
	"math"
	"os"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// The kernel's and upstream's CFS constants (pkg/kubelet/cm/helpers_linux.go).
const (
	MinShares     = 2
	MaxShares     = 262144
	SharesPerCPU  = 1024
	MilliCPUToCPU = 1000
	// QuotaPeriod is the CFS period in microseconds (100ms).
	QuotaPeriod = 100000
	// MinQuotaPeriod is the smallest quota the kernel takes (1ms).
	MinQuotaPeriod = 1000
)

// hugePagesUnbounded is what upstream writes to the QoS tiers' hugetlb
// limits so that only the pod cgroups bound huge pages.
const hugePagesUnbounded = int64(1) << 62

// defaultMemoryThrottlingFactor is memoryThrottlingFactor's default.
const defaultMemoryThrottlingFactor = 0.9

// MilliCPUToShares converts a CPU request to cpu.shares as upstream does:
// zero maps to MinShares (not the kernel's 1024 for "unset").
func MilliCPUToShares(milliCPU int64) uint64 {
	if milliCPU == 0 {
		return MinShares
	}
	shares := (milliCPU * SharesPerCPU) / MilliCPUToCPU
	if shares < MinShares {
		return MinShares
	}
	if shares > MaxShares {
		return MaxShares
	}
	return uint64(shares)
}

// MilliCPUToQuota converts a CPU limit to a CFS quota over period (both in
// microseconds); 0 means no limit.
func MilliCPUToQuota(milliCPU, period int64) int64 {
	if milliCPU == 0 {
		return 0
	}
	quota := (milliCPU * period) / MilliCPUToCPU
	if quota < MinQuotaPeriod {
		quota = MinQuotaPeriod
	}
	return quota
}

// CPUSharesToWeight maps cpu.shares [2, 262144] onto cgroup v2's cpu.weight
// [1, 10000] linearly, as upstream's cgroup manager does (not runc's newer
// quadratic conversion), so both kubelets write the same weight.
func CPUSharesToWeight(shares uint64) uint64 {
	if shares >= MaxShares {
		return 10000
	}
	if shares < MinShares {
		shares = MinShares
	}
	return 1 + ((shares-2)*9999)/262142
}

// ResourceConfig is what one cgroup gets; nil and empty fields are left as
// they are, as with upstream's ResourceConfig.
type ResourceConfig struct {
	CPUShares *uint64
	CPUQuota  *int64 // microseconds; -1 is unlimited
	CPUPeriod *uint64
	Memory    *int64 // bytes
	PidsLimit *int64 // <0 unlimited ("max"), 0 is written as 1 as runc does
	// CPUSet is cpuset.cpus (kubepods only: all CPUs, as upstream with the
	// none CPU manager policy).
	CPUSet string
	// HugePageLimit maps page size in bytes to a limit in bytes; page sizes
	// the node has but the map lacks get HugePageRest. Nil leaves hugetlb
	// alone.
	HugePageLimit map[int64]int64
	HugePageRest  int64
	// Unified are cgroup v2 files written as given (memory.min/low/high).
	Unified map[string]string
}

// QOSClass is the Pod's QoS class as upstream's GetPodQOS computes it: the
// API server's when set, else from pod-level resources when those are set
// (PodLevelResources, on by default), else from the containers.
func QOSClass(pod *v1.Pod) v1.PodQOSClass {
	if pod.Status.QOSClass != "" {
		return pod.Status.QOSClass
	}
	if resourcehelper.IsPodLevelResourcesSet(pod) {
		return requirementsQOS(pod.Spec.Resources)
	}
	var qos v1.PodQOSClass
	all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for i := range all {
		c := requirementsQOS(&all[i].Resources)
		switch {
		case c == v1.PodQOSBurstable:
			return c
		case qos == "":
			qos = c
		case qos != c:
			return v1.PodQOSBurstable
		}
	}
	if qos == "" {
		qos = v1.PodQOSBestEffort
	}
	return qos
}

func requirementsQOS(r *v1.ResourceRequirements) v1.PodQOSClass {
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		return v1.PodQOSBestEffort
	}
	var qos v1.PodQOSClass
	for _, rn := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		req, lim := r.Requests[rn], r.Limits[rn]
		var c v1.PodQOSClass
		switch {
		case !req.Equal(lim):
			return v1.PodQOSBurstable
		case req.IsZero():
			c = v1.PodQOSBestEffort
		default:
			c = v1.PodQOSGuaranteed
		}
		if qos == "" {
			qos = c
		} else if qos != c {
			return v1.PodQOSBurstable
		}
	}
	return qos
}

// podRequests sums the Pod's requests as upstream's cgroup code does:
// pod-level resources count, and so does the overhead.
func podRequests(pod *v1.Pod) v1.ResourceList {
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

// ResourceConfigForPod is upstream's ResourceConfigForPod with the 1.37
// defaults: the CFS period fixed at QuotaPeriod, pod-level resources on, no
// DRA node-allocatable claims, memoryReservationPolicy None. enforceCPULimits
// is cpuCFSQuota; on cgroup v2 (MemoryQoS) a Pod with pod-level resources
// also gets memory.high from throttlingFactor.
func ResourceConfigForPod(pod *v1.Pod, enforceCPULimits, cgroupV2 bool, throttlingFactor float64) *ResourceConfig {
	reqs := podRequests(pod)
	limits := resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})

	// A limit counts only when every container has one: one unlimited
	// container makes the Pod unlimited.
	cpuLimitsDeclared, memoryLimitsDeclared := true, true
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Resources.Limits.Cpu().IsZero() {
				cpuLimitsDeclared = false
			}
			if cs[i].Resources.Limits.Memory().IsZero() {
				memoryLimitsDeclared = false
			}
		}
	}
	if resourcehelper.IsPodLevelResourcesSet(pod) {
		if !pod.Spec.Resources.Limits.Cpu().IsZero() {
			cpuLimitsDeclared = true
		}
		if !pod.Spec.Resources.Limits.Memory().IsZero() {
			memoryLimitsDeclared = true
		}
	}

	var cpuRequests, cpuLimits, memoryLimits int64
	if q, ok := reqs[v1.ResourceCPU]; ok {
		cpuRequests = q.MilliValue()
	}
	if q, ok := limits[v1.ResourceCPU]; ok {
		cpuLimits = q.MilliValue()
	}
	if q, ok := limits[v1.ResourceMemory]; ok {
		memoryLimits = q.Value()
	}
	cpuShares := MilliCPUToShares(cpuRequests)
	cpuQuota := MilliCPUToQuota(cpuLimits, QuotaPeriod)
	if !enforceCPULimits {
		cpuQuota = -1
	}
	cpuPeriod := uint64(QuotaPeriod)

	rc := &ResourceConfig{HugePageLimit: hugePageLimits(reqs)}
	switch QOSClass(pod) {
	case v1.PodQOSGuaranteed:
		rc.CPUShares, rc.CPUQuota, rc.CPUPeriod, rc.Memory = &cpuShares, &cpuQuota, &cpuPeriod, &memoryLimits
	case v1.PodQOSBurstable:
		rc.CPUShares = &cpuShares
		if cpuLimitsDeclared {
			rc.CPUQuota, rc.CPUPeriod = &cpuQuota, &cpuPeriod
		}
		if memoryLimitsDeclared {
			rc.Memory = &memoryLimits
		}
	default:
		shares := uint64(MinShares)
		rc.CPUShares = &shares
	}
	if cgroupV2 {
		applyPodLevelMemoryHigh(pod, rc, reqs, limits, throttlingFactor)
	}
	return rc
}

// applyPodLevelMemoryHigh is upstream's ApplyPodLevelMemoryHigh (MemoryQoS):
// a Pod with pod-level resources and a memory limit is throttled at
// request + (limit-request)*factor, rounded down to a page.
func applyPodLevelMemoryHigh(pod *v1.Pod, rc *ResourceConfig, reqs, limits v1.ResourceList, factor float64) {
	if !resourcehelper.IsPodLevelResourcesSet(pod) {
		return
	}
	declared := true
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Resources.Limits.Memory().IsZero() {
				declared = false
			}
		}
	}
	if !pod.Spec.Resources.Limits.Memory().IsZero() {
		declared = true
	}
	if !declared {
		return
	}
	var req, lim int64
	if q, ok := reqs[v1.ResourceMemory]; ok {
		req = q.Value()
	}
	if q, ok := limits[v1.ResourceMemory]; ok {
		lim = q.Value()
	}
	if (req == lim && req != 0) || lim == 0 {
		return
	}
	page := int64(os.Getpagesize())
	high := int64(math.Floor(float64(req)+(float64(lim)-float64(req))*factor)/float64(page)) * page
	if high > 0 && high > req {
		if rc.Unified == nil {
			rc.Unified = map[string]string{}
		}
		rc.Unified["memory.high"] = strconv.FormatInt(high, 10)
	}
}

// hugePageLimits maps the hugepages-<size> resources to page size → bytes.
func hugePageLimits(rl v1.ResourceList) map[int64]int64 {
	out := map[int64]int64{}
	for rn, q := range rl {
		size, ok := hugePageSize(rn)
		if !ok {
			continue
		}
		out[size] += q.Value()
	}
	return out
}

func hugePageSize(rn v1.ResourceName) (int64, bool) {
	s, ok := strings.CutPrefix(string(rn), v1.ResourceHugePagesPrefix)
	if !ok {
		return 0, false
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Value() <= 0 {
		return 0, false
	}
	return q.Value(), true
}

// nodeAllocatableConfig is what kubepods gets (upstream's getCgroupConfig of
// the node-allocatable list): shares from cpu, memory, pids.max from "pid".
// The hugetlb limits are the unbounded ones upstream's periodic QoS update
// leaves on kubepods, and cpuset.cpus is set by the caller.
func nodeAllocatableConfig(alloc v1.ResourceList) *ResourceConfig {
	rc := &ResourceConfig{HugePageLimit: map[int64]int64{}, HugePageRest: hugePagesUnbounded}
	if q, ok := alloc[v1.ResourceMemory]; ok {
		v := q.Value()
		rc.Memory = &v
	}
	if q, ok := alloc[v1.ResourceCPU]; ok {
		v := MilliCPUToShares(q.MilliValue())
		rc.CPUShares = &v
	}
	if q, ok := alloc[ResourcePID]; ok {
		v := q.Value()
		rc.PidsLimit = &v
	}
	return rc
}

// ResourcePID is upstream's internal "pid" resource: the node's task limit
// in Capacity, reservable by systemReserved/kubeReserved.
const ResourcePID v1.ResourceName = "pid"
