// Package admission decides whether a Pod fits on this node before its
// worker starts, with the upstream kubelet's rejection reasons.
package admission

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
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
	// Object is the Node as last read from the API server (labels, taints,
	// status.features); nil skips the checks that need it.
	Object *v1.Node
	// Pressure are the node's pressure conditions (eviction.Manager).
	Pressure []v1.NodeConditionType
}

// Admit checks pod against the Pods already admitted (active, not terminal),
// in the order of upstream's admit handlers: sysctls, then resources, then AppArmor.
func Admit(n Node, active []*v1.Pod, pod *v1.Pod) Result {
	if r := admitPressure(n, pod); !r.Admit {
		return r
	}
	if r := admitSysctls(n, pod); !r.Admit {
		return r
	}
	if r := admitPredicates(n, active, pod); !r.Admit {
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
	// Upstream's noderesources.Fits order: cpu, memory, ephemeral-storage,
	// then the others; the first shortfall is the reason.
	first := map[v1.ResourceName]int{v1.ResourceCPU: 0, v1.ResourceMemory: 1, v1.ResourceEphemeralStorage: 2}
	var names []string
	for k := range req {
		names = append(names, string(k))
	}
	sort.Slice(names, func(i, j int) bool {
		oi, iok := first[v1.ResourceName(names[i])]
		oj, jok := first[v1.ResourceName(names[j])]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		rn := v1.ResourceName(name)
		q := req[rn]
		if q.IsZero() {
			continue
		}
		capacity, ok := n.Allocatable[rn]
		if !ok {
			// Upstream drops extended resources the node does not have
			// (removeMissingExtendedResources: their device plugin decides);
			// other missing resources, such as hugepages, do not fit.
			if isExtendedResourceName(rn) {
				continue
			}
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
	// Upstream's reason is "OutOf" and the whole name ("OutOfexample.com/gpu").
	return Result{Reason: "OutOf" + string(rn), Message: fmt.Sprintf("Node didn't have enough resource: %s, requested: %d, used: %d, capacity: %d",
		rn, value(rn, req), value(rn, used), value(rn, capacity))}
}

func value(rn v1.ResourceName, q resource.Quantity) int64 {
	if rn == v1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// isExtendedResourceName is upstream's v1helper.IsExtendedResourceName (in
// k8s.io/kubernetes only): a qualified name outside *kubernetes.io/ and not
// a quota "requests." name.
func isExtendedResourceName(name v1.ResourceName) bool {
	n := string(name)
	if !strings.Contains(n, "/") || strings.Contains(n, v1.ResourceDefaultNamespacePrefix) || strings.HasPrefix(n, v1.DefaultResourceRequestsPrefix) {
		return false
	}
	return len(validation.IsQualifiedName(v1.DefaultResourceRequestsPrefix+n)) == 0
}
