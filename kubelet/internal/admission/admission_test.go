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

// TestAdmitOrder: upstream's admit handlers run sysctls, then the resource
// predicates, then AppArmor; the first rejection is the one reported.
func TestAdmitOrder(t *testing.T) {
	full := Node{Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}, MaxPods: 1,
		KernelVersion: kernel("6.1"), AppArmorEnabled: func() bool { return false }}
	all := func(p *v1.Pod) *v1.Pod {
		p.Spec.SecurityContext = &v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "net.core.somaxconn", Value: "1"}},
			AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}}
		return p
	}
	armored := func(p *v1.Pod) *v1.Pod {
		p.Spec.SecurityContext = &v1.PodSecurityContext{AppArmorProfile: &v1.AppArmorProfile{Type: v1.AppArmorProfileTypeRuntimeDefault}}
		return p
	}
	for _, tc := range []struct {
		name   string
		active []*v1.Pod
		pod    *v1.Pod
		want   string
	}{
		{"sysctl before pods", []*v1.Pod{podReq("", "")}, all(podReq("2", "")), "SysctlForbidden"},
		{"pods before apparmor", []*v1.Pod{podReq("", "")}, armored(podReq("", "")), "OutOfpods"},
		{"cpu before apparmor", nil, armored(podReq("2", "")), "OutOfcpu"},
		{"apparmor last", nil, armored(podReq("1", "")), "AppArmor"},
	} {
		if got := Admit(full, tc.active, tc.pod); got.Reason != tc.want {
			t.Errorf("%s: reason %q (%s), want %q", tc.name, got.Reason, got.Message, tc.want)
		}
	}
}

// TestAdmitHostDefaults: a zero Node probes this host and admits a Pod that
// asks for nothing host-dependent, and the safe sysctls namespaced in every
// kernel.
func TestAdmitHostDefaults(t *testing.T) {
	p := podReq("", "")
	p.Status.Phase = v1.PodPending
	p.Spec.SecurityContext = &v1.PodSecurityContext{Sysctls: []v1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}
	if d := cmp.Diff(Result{Admit: true}, Admit(Node{}, nil, p)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	p.Spec.SecurityContext.Sysctls[0].Name = "kernel.panic"
	if d := cmp.Diff(Result{Reason: "SysctlForbidden", Message: `forbidden sysctl: "kernel.panic" not allowlisted`}, Admit(Node{}, nil, p)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}
