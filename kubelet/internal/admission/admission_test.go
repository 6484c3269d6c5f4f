package admission

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func podReq(cpu, mem string) *v1.Pod {
	rl := v1.ResourceList{}
	if cpu != "" {
		rl[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[v1.ResourceMemory] = resource.MustParse(mem)
	}
	return &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: rl}}}}}
}

func TestAdmit(t *testing.T) {
	node := Node{Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("1Gi")}, MaxPods: 2}
	gvisor := "gvisor"
	withRC := podReq("", "")
	withRC.Spec.RuntimeClassName = &gvisor
	for _, tc := range []struct {
		name   string
		node   Node
		active []*v1.Pod
		pod    *v1.Pod
		want   Result
	}{
		{"fits", node, []*v1.Pod{podReq("1", "")}, podReq("1", "512Mi"), Result{Admit: true}},
		{"cpu", node, []*v1.Pod{podReq("1500m", "")}, podReq("1", ""),
			Result{Reason: "OutOfcpu", Message: "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000"}},
		{"memory", node, nil, podReq("", "2Gi"),
			Result{Reason: "OutOfmemory", Message: "Node didn't have enough resource: memory, requested: 2147483648, used: 0, capacity: 1073741824"}},
		{"pods", node, []*v1.Pod{podReq("", ""), podReq("", "")}, podReq("", ""),
			Result{Reason: "OutOfpods", Message: "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"}},
		{"runtime class", Node{Handlers: map[string]bool{"runc": true}}, nil, withRC,
			Result{Reason: "UnknownRuntimeClass", Message: `runtime handler "gvisor" is not supported by the node's runtime`}},
	} {
		if d := cmp.Diff(tc.want, Admit(tc.node, tc.active, tc.pod)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}
