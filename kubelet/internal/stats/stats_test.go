package stats

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

type fakeHost struct{}

func (fakeHost) ProcStat() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")), nil
}

func (fakeHost) MemInfo() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\n")), nil
}

func (fakeHost) Statfs(string) (uint64, uint64, uint64, uint64, error) { return 1000, 400, 50, 20, nil }

var boot = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func (fakeHost) BootTime() time.Time { return boot }

func TestSummary(t *testing.T) {
	now := boot.Add(time.Hour)
	rs := critest.NewFakeRuntimeService()
	rs.Sandboxes["sb1"] = &critest.FakePodSandbox{PodSandboxStatus: runtimeapi.PodSandboxStatus{Id: "sb1"}}
	rs.SetFakePodSandboxStats([]*runtimeapi.PodSandboxStats{{
		Attributes: &runtimeapi.PodSandboxAttributes{Id: "sb1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"}},
		Linux: &runtimeapi.LinuxPodSandboxStats{
			Cpu:    &runtimeapi.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 7}},
			Memory: &runtimeapi.MemoryUsage{Timestamp: now.UnixNano(), WorkingSetBytes: &runtimeapi.UInt64Value{Value: 9}},
			Containers: []*runtimeapi.ContainerStats{{Attributes: &runtimeapi.ContainerAttributes{Id: "c1", Metadata: &runtimeapi.ContainerMetadata{Name: "c"}},
				Cpu: &runtimeapi.CpuUsage{Timestamp: now.UnixNano(), UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: 5}}}},
		}}})
	p := &Provider{NodeName: "vm", RootDir: "/r", Runtime: rs, Host: fakeHost{}, Now: func() time.Time { return now }}
	got, err := p.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mt := metav1.NewTime(now)
	fs := &statsapi.FsStats{Time: mt, CapacityBytes: ptr.To[uint64](1000), AvailableBytes: ptr.To[uint64](400), UsedBytes: ptr.To[uint64](600),
		Inodes: ptr.To[uint64](50), InodesFree: ptr.To[uint64](20), InodesUsed: ptr.To[uint64](30)}
	want := &statsapi.Summary{
		Node: statsapi.NodeStats{NodeName: "vm", StartTime: metav1.NewTime(boot),
			// (100+20+30+5+5+10) ticks of 10 ms
			CPU: &statsapi.CPUStats{Time: mt, UsageCoreNanoSeconds: ptr.To[uint64](1_700_000_000)},
			Memory: &statsapi.MemoryStats{Time: mt, AvailableBytes: ptr.To[uint64](600 * 1024), UsageBytes: ptr.To[uint64](800 * 1024),
				WorkingSetBytes: ptr.To[uint64](400 * 1024)},
			Fs: fs, Runtime: &statsapi.RuntimeStats{ImageFs: fs}},
		Pods: []statsapi.PodStats{{PodRef: statsapi.PodReference{Name: "p", Namespace: "ns", UID: "u"}, StartTime: mt,
			CPU:    &statsapi.CPUStats{Time: mt, UsageCoreNanoSeconds: ptr.To[uint64](7)},
			Memory: &statsapi.MemoryStats{Time: mt, WorkingSetBytes: ptr.To[uint64](9)},
			Containers: []statsapi.ContainerStats{{Name: "c", StartTime: mt,
				CPU: &statsapi.CPUStats{Time: mt, UsageCoreNanoSeconds: ptr.To[uint64](5)}}}}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
}
