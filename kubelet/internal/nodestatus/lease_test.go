package nodestatus

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/nodesuite/nodesuite/kubelet/internal/apiclient/apiclienttest"
)

func TestLeaseRenewer(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: "node-uid"}}
	want := func(at time.Time, holder string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "n1", Namespace: LeaseNamespace, OwnerReferences: owner},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](40),
				RenewTime: &metav1.MicroTime{Time: at}}}
	}
	other := want(t0.Add(-time.Hour), "someone-else")
	other.OwnerReferences = nil
	for _, tc := range []struct {
		name     string
		existing []runtime.Object
		// conflicts is how many updates fail with a conflict first.
		conflicts int
		syncs     int
		want      *coordinationv1.Lease
		// wantVerbs are the lease calls, in order.
		wantVerbs []string
	}{
		{name: "created, then renewed from the last one written", syncs: 2, want: want(t0.Add(10*time.Second), "n1"),
			wantVerbs: []string{"get", "create", "update"}},
		{name: "existing lease adopted", existing: []runtime.Object{other}, syncs: 1, want: want(t0, "someone-else"),
			wantVerbs: []string{"get", "update"}},
		{name: "conflict reads it again", existing: []runtime.Object{other}, conflicts: 1, syncs: 1,
			want: want(t0, "someone-else"), wantVerbs: []string{"get", "update", "get", "update"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.existing...)
			conflicts := tc.conflicts
			client.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
				if conflicts > 0 {
					conflicts--
					return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "n1", nil)
				}
				return false, nil, nil
			})
			clk := clocktesting.NewFakeClock(t0)
			r := &leaseRenewer{client: apiclienttest.New(client).Leases(LeaseNamespace), name: "n1", ns: LeaseNamespace,
				duration: 40, interval: 10 * time.Second, clock: clk, log: zap.NewNop(),
				prepare: func(l *coordinationv1.Lease) error {
					l.OwnerReferences = owner
					return nil
				}}
			for i := range tc.syncs {
				if i > 0 {
					clk.Step(10 * time.Second)
				}
				r.sync(context.Background())
			}
			var verbs []string
			for _, a := range client.Actions() {
				if a.GetResource().Resource == "leases" {
					verbs = append(verbs, a.GetVerb())
				}
			}
			if d := cmp.Diff(tc.wantVerbs, verbs); d != "" {
				t.Errorf("lease calls (-want +got):\n%s", d)
			}
			got, err := client.CoordinationV1().Leases(LeaseNamespace).Get(context.Background(), "n1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got.TypeMeta, got.ResourceVersion, got.ManagedFields = metav1.TypeMeta{}, "", nil // set by the fake
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("lease (-want +got):\n%s", d)
			}
		})
	}
}
