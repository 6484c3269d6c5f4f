// Package admission decides whether a Pod fits on this node before its
// worker starts, with the upstream kubelet's rejection reasons.
package admission

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Result is a rejection: Reason (OutOfcpu, OutOfmemory, OutOfpods, ...) and Message.
type Result struct {
	Admit           bool
	Reason, Message string
}

// Node is what admission checks against.
type Node struct {
	Allocatable v1.ResourceList
	MaxPods     int64
	// Handlers are the runtime handlers; nil means unknown (accept any).
	Handlers map[string]bool
}

// Admit checks pod against the Pods already admitted (active, not terminal).
func Admit(n Node, active []*v1.Pod, pod *v1.Pod) Result {
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
