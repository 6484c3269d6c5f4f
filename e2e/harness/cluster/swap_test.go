package cluster

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanKubeletSwap(t *testing.T) {
	bins := map[Choice]string{Ours: "/repo/_output/bin/kubelet", Upstream: "/cache/bin/kubelet"}
	args := []string{"--config=/c/kubelet.yaml", "--root-dir=/c/kubelet"}
	st := &State{Processes: []ProcState{
		{Name: "etcd", PID: 10},
		{Name: "kubelet", PID: 20, Path: "/cache/bin/kubelet"},
		{Name: "kube-proxy", PID: 30},
		{Name: "kubelet", PID: 40, Path: "/repo/_output/bin/kubelet"},
	}}
	tests := []struct {
		name    string
		st      *State
		to      Choice
		want    KubeletSwap
		wantErr error
	}{
		{
			name: "newest kubelet entry is replaced by upstream with the same args",
			st:   st, to: Upstream,
			want: KubeletSwap{
				Old: ProcState{Name: "kubelet", PID: 40, Path: "/repo/_output/bin/kubelet"},
				New: Process{Name: "kubelet", Path: "/cache/bin/kubelet", Args: args, Health: KubeletHealth},
				To:  Upstream,
			},
		},
		{
			name: "restart of the same choice",
			st:   &State{Processes: []ProcState{{Name: "kubelet", PID: 20, Path: "/repo/_output/bin/kubelet"}}}, to: Ours,
			want: KubeletSwap{
				Old: ProcState{Name: "kubelet", PID: 20, Path: "/repo/_output/bin/kubelet"},
				New: Process{Name: "kubelet", Path: "/repo/_output/bin/kubelet", Args: args, Health: KubeletHealth},
				To:  Ours,
			},
		},
		{name: "no kubelet recorded", st: &State{Processes: []ProcState{{Name: "etcd", PID: 1}}}, to: Ours, wantErr: ErrNoKubelet},
		{name: "bad choice", st: st, to: Choice("theirs"), wantErr: ErrInvalidOption},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlanKubeletSwap(tc.st, args, tc.to, bins)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWithoutProcess(t *testing.T) {
	in := []ProcState{{Name: "etcd", PID: 1}, {Name: "kubelet", PID: 2}, {Name: "kube-proxy", PID: 3}}
	want := []ProcState{{Name: "etcd", PID: 1}, {Name: "kube-proxy", PID: 3}}
	if diff := cmp.Diff(want, withoutProcess(in, 2)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
