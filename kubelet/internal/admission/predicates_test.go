package admission

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func withPorts(p *v1.Pod, ports ...v1.ContainerPort) *v1.Pod {
	p.Spec.Containers[0].Ports = ports
	return p
}

// TestAdmitPredicates checks upstream's predicate handler beyond resources,
// with its reasons and messages.
func TestAdmitPredicates(t *testing.T) {
	nodeObj := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", Labels: map[string]string{"disk": "ssd", v1.LabelOSStable: "linux"}},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "dedicated", Value: "db", Effect: v1.TaintEffectNoExecute},
			{Key: "soft", Effect: v1.TaintEffectNoSchedule}}}}
	tolerant := func(p *v1.Pod) *v1.Pod {
		p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "db", Effect: v1.TaintEffectNoExecute}}
		return p
	}
	node := Node{Object: nodeObj, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}}
	pred := func(name, desc string) Result {
		return Result{Reason: name, Message: "Predicate " + name + " failed: " + desc}
	}
	for _, tc := range []struct {
		name   string
		node   Node
		active []*v1.Pod
		pod    func() *v1.Pod
		want   Result
	}{
		{name: "tolerates the NoExecute taint; NoSchedule does not matter", node: node,
			pod: func() *v1.Pod { return tolerant(podReq("", "")) }, want: Result{Admit: true}},
		{name: "untolerated NoExecute taint", node: node, pod: func() *v1.Pod { return podReq("", "") },
			want: pred("TaintToleration", "node(s) had taints that the pod didn't tolerate")},
		{name: "static Pods skip the taint check", node: node, pod: func() *v1.Pod {
			p := podReq("", "")
			p.Annotations = map[string]string{"kubernetes.io/config.source": "file"}
			return p
		}, want: Result{Admit: true}},
		{name: "nodeSelector", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.NodeSelector = map[string]string{"disk": "hdd"}
			return p
		}, want: pred("NodeAffinity", "node(s) didn't match Pod's node affinity/selector")},
		{name: "resources come before affinity", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("3", ""))
			p.Spec.NodeSelector = map[string]string{"disk": "hdd"}
			return p
		}, want: Result{Reason: "OutOfcpu", Message: "Node didn't have enough resource: cpu, requested: 3000, used: 0, capacity: 2000"}},
		{name: "another node's name", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.NodeName = "node2"
			return p
		}, want: pred("NodeName", "node(s) didn't match the requested node name")},
		{name: "host port taken on every address", node: node,
			active: []*v1.Pod{withPorts(podReq("", ""), v1.ContainerPort{HostPort: 8080, ContainerPort: 80})},
			pod: func() *v1.Pod {
				return withPorts(tolerant(podReq("", "")), v1.ContainerPort{HostPort: 8080, ContainerPort: 80, HostIP: "10.0.0.1", Protocol: v1.ProtocolTCP})
			}, want: pred("NodePorts", "node(s) didn't have free ports for the requested pod ports")},
		{name: "same port, other protocol or other address: no conflict", node: node,
			active: []*v1.Pod{withPorts(podReq("", ""), v1.ContainerPort{HostPort: 8080, HostIP: "10.0.0.2"}, v1.ContainerPort{HostPort: 53, Protocol: v1.ProtocolUDP})},
			pod: func() *v1.Pod {
				return withPorts(tolerant(podReq("", "")), v1.ContainerPort{HostPort: 8080, HostIP: "10.0.0.1"}, v1.ContainerPort{HostPort: 53})
			}, want: Result{Admit: true}},
		{name: "OS label", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Labels = map[string]string{v1.LabelOSStable: "windows"}
			return p
		}, want: Result{Reason: "PodOSSelectorNodeLabelDoesNotMatch", Message: "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"}},
		{name: "OS field", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.OS = &v1.PodOS{Name: v1.Windows}
			return p
		}, want: Result{Reason: "PodOSNotSupported", Message: "Failed to admit pod as the OS field doesn't match node OS"}},
		{name: "Strict groups policy on a node whose runtime lacks it", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.SecurityContext = &v1.PodSecurityContext{SupplementalGroupsPolicy: ptr.To(v1.SupplementalGroupsPolicyStrict)}
			return p
		}, want: Result{Reason: "SupplementalGroupsPolicyNotSupported", Message: "SupplementalGroupsPolicy=Strict is not supported in this node"}},
		{name: "an extended resource the node lacks is left to its device plugin", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("1")
			return p
		}, want: Result{Admit: true}},
		{name: "hugepages the node lacks do not fit", node: node, pod: func() *v1.Pod {
			p := tolerant(podReq("", ""))
			p.Spec.Containers[0].Resources.Requests["hugepages-2Mi"] = resource.MustParse("2Mi")
			return p
		}, want: Result{Reason: "OutOfhugepages-2Mi", Message: "Node didn't have enough resource: hugepages-2Mi, requested: 2097152, used: 0, capacity: 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, Admit(tc.node, tc.active, tc.pod())); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// With the runtime's feature reported, Strict is admitted.
	n := node
	n.Object = nodeObj.DeepCopy()
	n.Object.Status.Features = &v1.NodeFeatures{SupplementalGroupsPolicy: ptr.To(true)}
	p := tolerant(podReq("", ""))
	p.Spec.SecurityContext = &v1.PodSecurityContext{SupplementalGroupsPolicy: ptr.To(v1.SupplementalGroupsPolicyStrict)}
	if r := Admit(n, nil, p); !r.Admit {
		t.Errorf("Strict with the feature: %+v", r)
	}
}

func TestAdmitExtendedResourceShortfall(t *testing.T) {
	node := Node{Allocatable: v1.ResourceList{"example.com/gpu": resource.MustParse("1")}}
	p := podReq("", "")
	p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("2")
	want := Result{Reason: "OutOfexample.com/gpu", Message: "Node didn't have enough resource: example.com/gpu, requested: 2, used: 0, capacity: 1"}
	if d := cmp.Diff(want, Admit(node, nil, p)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestAdmitPressure is upstream's eviction manager Admit.
func TestAdmitPressure(t *testing.T) {
	burstable := podReq("100m", "")
	bestEffort := podReq("", "")
	tolerating := podReq("", "")
	tolerating.Spec.Tolerations = []v1.Toleration{{Key: v1.TaintNodeMemoryPressure, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}}
	critical := podReq("", "")
	critical.Spec.Priority = ptr.To[int32](2000001000)
	static := podReq("", "")
	static.Annotations = map[string]string{"kubernetes.io/config.source": "file"}
	memory := []v1.NodeConditionType{v1.NodeMemoryPressure}
	disk := []v1.NodeConditionType{v1.NodeDiskPressure}
	for _, tc := range []struct {
		name     string
		pressure []v1.NodeConditionType
		pod      *v1.Pod
		want     Result
	}{
		{"no pressure", nil, bestEffort, Result{Admit: true}},
		{"memory: BestEffort refused", memory, bestEffort, Result{Reason: "Evicted", Message: "The node had condition: [MemoryPressure]. "}},
		{"memory: Burstable admitted", memory, burstable, Result{Admit: true}},
		{"memory: tolerating BestEffort admitted", memory, tolerating, Result{Admit: true}},
		{"disk: every Pod refused", disk, burstable, Result{Reason: "Evicted", Message: "The node had condition: [DiskPressure]. "}},
		{"disk: critical priority admitted", disk, critical, Result{Admit: true}},
		{"disk: static admitted", disk, static, Result{Admit: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := Node{Pressure: tc.pressure, Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}}
			if d := cmp.Diff(tc.want, Admit(n, nil, tc.pod)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
