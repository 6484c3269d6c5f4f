package syncer

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSlim(t *testing.T) {
	mf := []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	now := metav1.Now()
	tests := []struct {
		name     string
		in, want any
	}{{
		name: "Service keeps its annotations but the last applied configuration",
		in: &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ManagedFields: mf,
			Annotations: map[string]string{v1.LastAppliedConfigAnnotation: "{}", "a": "b"}},
			Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1"}},
		want: &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{"a": "b"}},
			Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1"}},
	}, {
		name: "EndpointSlice loses target refs and host names",
		in: &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", ManagedFields: mf,
			Annotations: map[string]string{v1.EndpointsLastChangeTriggerTime: "t"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2"}, Hostname: ptr.To("h"), NodeName: ptr.To("n1"),
				Zone: ptr.To("z"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef: &v1.ObjectReference{Kind: "Pod", Name: "p"}}}},
		want: &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1",
			Annotations: map[string]string{v1.EndpointsLastChangeTriggerTime: "t"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2"}, NodeName: ptr.To("n1"),
				Zone: ptr.To("z"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}},
	}, {
		name: "Node keeps addresses, taints and deletion",
		in: &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ManagedFields: mf, DeletionTimestamp: &now, Labels: map[string]string{"l": "v"},
			Annotations: map[string]string{"x": "y"}},
			Spec: v1.NodeSpec{Taints: []v1.Taint{{Key: "k"}}},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.1"}},
				Images: []v1.ContainerImage{{Names: []string{"i"}}}, Conditions: []v1.NodeCondition{{Type: v1.NodeReady}}}},
		want: &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", DeletionTimestamp: &now, Labels: map[string]string{"l": "v"}},
			Spec:   v1.NodeSpec{Taints: []v1.Taint{{Key: "k"}}},
			Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.0.2.1"}}}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := slim(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
