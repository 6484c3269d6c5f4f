// Package admission decides whether a Pod fits on this node before its
// worker starts, with the upstream kubelet's rejection reasons.
package admission

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/version"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Result is a rejection: Reason (SysctlForbidden, OutOfcpu, OutOfmemory,
// OutOfpods, AppArmor, ...) and Message.
type Result struct {
	Admit           bool
	Reason, Message string
}

// Node is what admission checks against. Zero values are upstream's
// defaults on this host.
type Node struct {
	Allocatable v1.ResourceList
	MaxPods     int64
	// Handlers are the runtime handlers; nil means unknown (accept any).
	Handlers map[string]bool
	// AllowedUnsafeSysctls are the KubeletConfiguration's allowedUnsafeSysctls:
	// names and "prefix*" patterns allowed besides the safe sysctls.
	AllowedUnsafeSysctls []string
	// KernelVersion decides which safe sysctls the kernel namespaces; nil
	// reads the running kernel's.
	KernelVersion func() (*version.Version, error)
	// AppArmorEnabled tells whether the host enforces AppArmor; nil probes it.
	AppArmorEnabled func() bool
}

// Admit checks pod against the Pods already admitted (active, not terminal),
// in the order of upstream's admit handlers: sysctls, then resources, then AppArmor.
func Admit(n Node, active []*v1.Pod, pod *v1.Pod) Result {
	if r := admitSysctls(n, pod); !r.Admit {
		return r
	}
	if r := admitResources(n, active, pod); !r.Admit {
		return r
	}
	return admitAppArmor(n, pod)
}

// admitResources is upstream's predicate handler: the pod count, the runtime
// class and the requested resources.
func admitResources(n Node, active []*v1.Pod, pod *v1.Pod) Result {
	if n.MaxPods > 0 && int64(len(active))+1 > n.MaxPods {
		return Result{Reason: "OutOfpods", Message: fmt.Sprintf("Node didn't have enough resource: pods, requested: 1, used: %d, capacity: %d", len(active), n.MaxPods)}
	}
	if rc := pod.Spec.RuntimeClassName; rc != nil && n.Handlers != nil && !n.Handlers[*rc] {
		return Result{Reason: "UnknownRuntimeClass", Message: fmt.Sprintf("runtime handler %q is not supported by the node's runtime", *rc)}
	}
	req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	used := v1.ResourceList{}
	for _, p := range active {
		for k, q := range resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{}) {
			u := used[k]
			u.Add(q)
			used[k] = u
		}
	}
	var names []string
	for k := range req {
		names = append(names, string(k))
	}
	sort.Strings(names)
	for _, name := range names {
		rn := v1.ResourceName(name)
		q := req[rn]
		if q.IsZero() {
			continue
		}
		capacity, ok := n.Allocatable[rn]
		if !ok {
			if strings.Contains(name, "/") || strings.HasPrefix(name, "hugepages-") {
				return reject(rn, q, used[rn], resource.Quantity{})
			}
			continue
		}
		total := used[rn].DeepCopy()
		total.Add(q)
		if total.Cmp(capacity) > 0 {
			return reject(rn, q, used[rn], capacity)
		}
	}
	return Result{Admit: true}
}

func reject(rn v1.ResourceName, req, used, capacity resource.Quantity) Result {
	short := string(rn)
	if i := strings.LastIndex(short, "/"); i >= 0 {
		short = short[i+1:]
	}
	return Result{Reason: "OutOf" + short, Message: fmt.Sprintf("Node didn't have enough resource: %s, requested: %d, used: %d, capacity: %d",
		rn, value(rn, req), value(rn, used), value(rn, capacity))}
}

func value(rn v1.ResourceName, q resource.Quantity) int64 {
	if rn == v1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}
