package eviction

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

type fakeObserver map[string]Observation

func (f fakeObserver) Observe(context.Context) (map[string]Observation, error) { return f, nil }

const gi = 1 << 30

func TestPressureConditions(t *testing.T) {
	roomy := fakeObserver{MemoryAvailable: {8 * gi, 16 * gi}, NodeFsAvailable: {50 * gi, 100 * gi}, NodeFsInodesFree: {900, 1000},
		ImageFsAvailable: {50 * gi, 100 * gi}, ImageFsInodesFree: {900, 1000}, PIDAvailable: {4000000, 4194304}}
	with := func(sig string, o Observation) fakeObserver {
		f := fakeObserver{}
		for k, v := range roomy {
			f[k] = v
		}
		f[sig] = o
		return f
	}
	for _, tc := range []struct {
		name string
		hard map[string]string
		obs  fakeObserver
		want []v1.NodeConditionType
	}{
		{"defaults, nothing crossed", nil, roomy, nil},
		{"memory under 100Mi", nil, with(MemoryAvailable, Observation{50 << 20, 16 * gi}), []v1.NodeConditionType{v1.NodeMemoryPressure}},
		{"nodefs under 10%", nil, with(NodeFsAvailable, Observation{9 * gi, 100 * gi}), []v1.NodeConditionType{v1.NodeDiskPressure}},
		{"imagefs under 15%", nil, with(ImageFsAvailable, Observation{14 * gi, 100 * gi}), []v1.NodeConditionType{v1.NodeDiskPressure}},
		{"inodes under 5%", nil, with(NodeFsInodesFree, Observation{40, 1000}), []v1.NodeConditionType{v1.NodeDiskPressure}},
		{"no pid threshold by default", nil, with(PIDAvailable, Observation{10, 4194304}), nil},
		{"configured pid threshold", map[string]string{PIDAvailable: "1000"}, with(PIDAvailable, Observation{10, 4194304}),
			[]v1.NodeConditionType{v1.NodePIDPressure}},
		{"only the configured signals count", map[string]string{MemoryAvailable: "1Gi"}, with(NodeFsAvailable, Observation{1, 100 * gi}), nil},
		{"harness thresholds", map[string]string{MemoryAvailable: "100Mi", NodeFsAvailable: "1%", ImageFsAvailable: "1%"},
			with(ImageFsAvailable, Observation{gi / 2, 100 * gi}), []v1.NodeConditionType{v1.NodeDiskPressure}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th, err := ParseThresholds(tc.hard)
			if err != nil {
				t.Fatal(err)
			}
			m := &Manager{Thresholds: th, Observer: tc.obs, TransitionPeriod: 5 * time.Minute, Clock: clocktesting.NewFakeClock(time.Now())}
			got, err := m.Synchronize(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestTransitionPeriod: a condition stays for evictionPressureTransitionPeriod
// after its signal recovers, so it does not flap.
func TestTransitionPeriod(t *testing.T) {
	th, _ := ParseThresholds(nil)
	clk := clocktesting.NewFakeClock(time.Now())
	obs := fakeObserver{MemoryAvailable: {50 << 20, 16 * gi}}
	m := &Manager{Thresholds: th, Observer: obs, TransitionPeriod: 5 * time.Minute, Clock: clk}
	if got, _ := m.Synchronize(context.Background()); len(got) != 1 {
		t.Fatalf("under threshold: %v", got)
	}
	obs[MemoryAvailable] = Observation{8 * gi, 16 * gi}
	clk.Step(4 * time.Minute)
	if got, _ := m.Synchronize(context.Background()); len(got) != 1 {
		t.Errorf("recovered 4 min ago, inside the period: %v", got)
	}
	clk.Step(2 * time.Minute)
	if got := m.Conditions(); len(got) != 0 {
		t.Errorf("after the period: %v", got)
	}
}

func TestParseThresholdsRejects(t *testing.T) {
	for _, hard := range []map[string]string{{"memory.free": "1Gi"}, {MemoryAvailable: "lots"}, {NodeFsAvailable: "120%"}, {MemoryAvailable: "-1"}} {
		if _, err := ParseThresholds(hard); err == nil {
			t.Errorf("%v accepted", hard)
		}
	}
}

// TestHostObserver reads this machine: every signal is there and sane.
func TestHostObserver(t *testing.T) {
	obs, err := HostObserver{RootDir: t.TempDir()}.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []string{MemoryAvailable, NodeFsAvailable, NodeFsInodesFree, ImageFsAvailable, ImageFsInodesFree, PIDAvailable} {
		o, ok := obs[sig]
		if !ok || o.Capacity <= 0 || o.Available < 0 || o.Available > o.Capacity {
			t.Errorf("%s = %+v (present %v)", sig, o, ok)
		}
	}
}
