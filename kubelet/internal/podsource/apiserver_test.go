package podsource

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStripManagedFields(t *testing.T) {
	meta := func(mf []metav1.ManagedFieldsEntry) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"a": "b"}, ManagedFields: mf}
	}
	mf := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	for _, tc := range []struct {
		name    string
		in, out any
	}{
		{"pod", &v1.Pod{ObjectMeta: meta(mf), Spec: v1.PodSpec{NodeName: "n"}}, &v1.Pod{ObjectMeta: meta(nil), Spec: v1.PodSpec{NodeName: "n"}}},
		{"service", &v1.Service{ObjectMeta: meta(mf)}, &v1.Service{ObjectMeta: meta(nil)}},
		// A tombstone is not an object: passed through untouched.
		{"not an object", "x", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := StripManagedFields(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.out, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
