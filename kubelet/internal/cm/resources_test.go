package cm

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestMilliCPUToShares(t *testing.T) {
	for milli, want := range map[int64]uint64{
		0: 2, 1: 2, 2: 2, 3: 3, 100: 102, 250: 256, 1000: 1024, 3400: 3481,
		256000: 262144, 300000: 262144,
	} {
		if got := MilliCPUToShares(milli); got != want {
			t.Errorf("MilliCPUToShares(%d) = %d, want %d", milli, got, want)
		}
	}
}

func TestMilliCPUToQuota(t *testing.T) {
	for milli, want := range map[int64]int64{
		0: 0, 1: MinQuotaPeriod, 9: MinQuotaPeriod, 10: 1000, 11: 1100, 250: 25000, 1000: 100000, 1500: 150000,
	} {
		if got := MilliCPUToQuota(milli, QuotaPeriod); got != want {
			t.Errorf("MilliCPUToQuota(%d) = %d, want %d", milli, got, want)
		}
	}
}

func TestCPUSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{
		0: 1, 2: 1, 3: 1, 28: 1, 29: 2, 102: 4, 1024: 39, 2178: 84, 3481: 133, 4096: 157,
		262143: 9999, 262144: 10000, 1 << 20: 10000,
	} {
		if got := CPUSharesToWeight(shares); got != want {
			t.Errorf("CPUSharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestQOSClass(t *testing.T) {
	guaranteed := ctr(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi"))
	for _, tc := range []struct {
		name string
		pod  *v1.Pod
		want v1.PodQOSClass
	}{
		{"nothing set", pod("u", ctr(nil, nil)), v1.PodQOSBestEffort},
		{"no containers", pod("u"), v1.PodQOSBestEffort},
		{"requests equal limits", pod("u", guaranteed, guaranteed), v1.PodQOSGuaranteed},
		{"cpu only, equal", pod("u", ctr(rl("cpu", "1"), rl("cpu", "1"))), v1.PodQOSBurstable},
		{"limits without requests", pod("u", ctr(nil, rl("cpu", "1", "memory", "1Gi"))), v1.PodQOSBurstable},
		{"one BestEffort container", pod("u", guaranteed, ctr(nil, nil)), v1.PodQOSBurstable},
		{"a Burstable init container", withInit(pod("u", guaranteed), ctr(rl("cpu", "1"), nil)), v1.PodQOSBurstable},
		{"extended resources only", pod("u", ctr(rl("example.com/gpu", "1"), rl("example.com/gpu", "1"))), v1.PodQOSBestEffort},
		{"pod-level resources decide", withPodResources(pod("u", ctr(nil, nil)), rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi")), v1.PodQOSGuaranteed},
		{"the API server's class", func() *v1.Pod {
			p := pod("u", guaranteed)
			p.Status.QOSClass = v1.PodQOSBestEffort
			return p
		}(), v1.PodQOSBestEffort},
	} {
		if got := QOSClass(tc.pod); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
