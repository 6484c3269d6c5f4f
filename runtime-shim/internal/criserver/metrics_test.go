package criserver

import (
	"sort"
	"strings"
	"testing"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/google/go-cmp/cmp"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const netDevSample = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0
`

func TestParseNetDev(t *testing.T) {
	got, err := parseNetDev(strings.NewReader(netDevSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []netDev{{Name: "eth0", RxBytes: 5000, RxPackets: 40, RxErrs: 1, RxDrop: 2, TxBytes: 3000, TxPackets: 30, TxErrs: 3, TxDrop: 4}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseNetDev(strings.NewReader("h1\nh2\neth0: 1 2 3\n")); err == nil {
		t.Error("short line: want an error")
	}
}

// Every descriptor is emitted for a running container on cgroup v1 with
// I/O, with as many label values as the descriptor has keys.
func TestMetricsMatchDescriptors(t *testing.T) {
	in := containerInput{
		V1: &v1stats.Metrics{
			CPU:    &v1stats.CPUStat{Usage: &v1stats.CPUUsage{Total: 3e9, User: 2e9, Kernel: 1e9}, Throttling: &v1stats.Throttle{Periods: 5}},
			Memory: &v1stats.MemoryStat{TotalCache: 10, Usage: &v1stats.MemoryEntry{Usage: 100, Max: 200}, TotalInactiveFile: 30},
			Pids:   &v1stats.PidsStat{Current: 2, Limit: 10},
			Blkio: &v1stats.BlkIOStat{
				IoServiceBytesRecursive: []*v1stats.BlkIOEntry{{Op: "Read", Major: 8, Value: 1}, {Op: "Write", Major: 8, Value: 2}},
				IoServicedRecursive:     []*v1stats.BlkIOEntry{{Op: "Read", Major: 8, Value: 1}, {Op: "Write", Major: 8, Value: 1}},
			},
		},
		Processes: 1, FDs: 4, Sockets: 1,
		FS: &fsInput{Device: "overlayfs", UsedBytes: 1, LimitBytes: 2, InodesFree: 3, InodesTotal: 4},
	}
	c := &containerRec{ID: "c1", Started: 5e9, Config: &runtime.ContainerConfig{Linux: &runtime.LinuxContainerConfig{
		Resources: &runtime.LinuxContainerResources{CpuPeriod: 100000, CpuShares: 1024}}}}
	base := []string{"p", "ns", "c", "c1", "img"}
	ifs, err := parseNetDev(strings.NewReader(netDevSample))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	ms := append(containerMetrics(in, c, base, now), networkMetrics(ifs, base, now)...)
	seen := map[string]int{}
	values := map[string]uint64{}
	for _, m := range ms {
		seen[m.Name] = len(m.LabelValues)
		values[m.Name] += m.GetValue().GetValue()
	}
	var missing, mismatched []string
	for _, d := range metricDefs {
		n, ok := seen[d.name]
		switch {
		case !ok:
			missing = append(missing, d.name)
		case n != len(d.labels):
			mismatched = append(mismatched, d.name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(mismatched) > 0 {
		t.Errorf("descriptors not emitted: %v; label count differs: %v", missing, mismatched)
	}
	want := map[string]uint64{"container_cpu_usage_seconds_total": 3, "container_memory_working_set_bytes": 70,
		"container_start_time_seconds": 5, "container_last_seen": 100, "container_network_receive_bytes_total": 5000,
		"container_threads_max": 10, "container_spec_cpu_shares": 1024}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%s = %d, want %d", k, values[k], v)
		}
	}
}
