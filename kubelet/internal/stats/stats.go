// Package stats builds the kubelet's /stats/summary: node CPU, memory and
// filesystem from /proc and statfs, Pods and containers from the CRI
// runtime's own statistics (ListPodSandboxStats, or ListContainerStats where
// a runtime lacks it), as the upstream kubelet's CRI stats provider does.
package stats

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	statsapi "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
)

// Host reads the node's own figures; an interface so unit tests need no /proc.
type Host interface {
	ProcStat() (io.ReadCloser, error)
	MemInfo() (io.ReadCloser, error)
	Statfs(path string) (capacity, available, inodes, inodesFree uint64, err error)
	BootTime() time.Time
}

// Provider computes summaries.
type Provider struct {
	NodeName string
	RootDir  string
	Runtime  internalapi.RuntimeService
	Host     Host
	Now      func() time.Time
}

// clockTicks is USER_HZ, 100 on every Linux architecture Kubernetes runs on.
const clockTicks = 100

// Summary is the whole /stats/summary answer.
func (p *Provider) Summary(ctx context.Context) (*statsapi.Summary, error) {
	now := metav1.NewTime(time.Now())
	if p.Now != nil {
		now = metav1.NewTime(p.Now())
	}
	node := statsapi.NodeStats{NodeName: p.NodeName, StartTime: metav1.NewTime(p.Host.BootTime())}
	if cpu, err := p.nodeCPU(); err == nil {
		node.CPU = &statsapi.CPUStats{Time: now, UsageCoreNanoSeconds: &cpu}
	}
	if mem, err := p.nodeMemory(now); err == nil {
		node.Memory = mem
	}
	if fs, err := p.fs(now, p.RootDir); err == nil {
		node.Fs = fs
		node.Runtime = &statsapi.RuntimeStats{ImageFs: fs}
	}
	pods, err := p.pods(ctx, now)
	if err != nil {
		return nil, err
	}
	return &statsapi.Summary{Node: node, Pods: pods}, nil
}

func (p *Provider) nodeCPU() (uint64, error) {
	f, err := p.Host.ProcStat()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return ParseProcStat(f)
}

// ParseProcStat returns the CPU time used by all CPUs in nanoseconds
// (user, nice, system, irq, softirq and steal; idle and iowait excluded).
func ParseProcStat(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 9 || f[0] != "cpu" {
			continue
		}
		var total uint64
		for _, i := range []int{1, 2, 3, 6, 7, 8} {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: %w", err)
			}
			total += v
		}
		return total * uint64(time.Second) / clockTicks, nil
	}
	return 0, fmt.Errorf("/proc/stat: no cpu line")
}

func (p *Provider) nodeMemory(now metav1.Time) (*statsapi.MemoryStats, error) {
	f, err := p.Host.MemInfo()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := ParseMemInfo(f)
	if err != nil {
		return nil, err
	}
	total, avail := m["MemTotal"], m["MemAvailable"]
	usage := total - m["MemFree"]
	ws := total - avail
	return &statsapi.MemoryStats{Time: now, AvailableBytes: &avail, UsageBytes: &usage, WorkingSetBytes: &ws}, nil
}

// ParseMemInfo reads /proc/meminfo into bytes by field name.
func ParseMemInfo(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		out[k] = v
	}
	if _, ok := out["MemTotal"]; !ok {
		return nil, fmt.Errorf("/proc/meminfo: no MemTotal")
	}
	return out, sc.Err()
}

func (p *Provider) fs(now metav1.Time, path string) (*statsapi.FsStats, error) {
	capacity, avail, inodes, free, err := p.Host.Statfs(path)
	if err != nil {
		return nil, err
	}
	used := capacity - avail
	return &statsapi.FsStats{Time: now, CapacityBytes: &capacity, AvailableBytes: &avail, UsedBytes: &used,
		Inodes: &inodes, InodesFree: &free, InodesUsed: ptr.To(inodes - free)}, nil
}

func (p *Provider) pods(ctx context.Context, now metav1.Time) ([]statsapi.PodStats, error) {
	sbs, err := p.Runtime.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{})
	if err != nil {
		return nil, fmt.Errorf("list pod sandbox stats: %w", err)
	}
	out := make([]statsapi.PodStats, 0, len(sbs))
	for _, sb := range sbs {
		md := sb.GetAttributes().GetMetadata()
		if md == nil {
			continue
		}
		ps := statsapi.PodStats{PodRef: statsapi.PodReference{Name: md.Name, Namespace: md.Namespace, UID: md.Uid}, StartTime: now}
		lx := sb.GetLinux()
		ps.CPU = cpu(lx.GetCpu())
		ps.Memory = memory(lx.GetMemory())
		if n := lx.GetNetwork(); n != nil && n.DefaultInterface != nil {
			i := iface(n.DefaultInterface)
			ns := &statsapi.NetworkStats{Time: metav1.NewTime(time.Unix(0, n.Timestamp)), InterfaceStats: i}
			for _, x := range n.Interfaces {
				ns.Interfaces = append(ns.Interfaces, iface(x))
			}
			ps.Network = ns
		}
		for _, c := range lx.GetContainers() {
			cm := c.GetAttributes().GetMetadata()
			if cm == nil {
				continue
			}
			cs := statsapi.ContainerStats{Name: cm.Name, StartTime: now, CPU: cpu(c.Cpu), Memory: memory(c.Memory)}
			if wl := c.WritableLayer; wl != nil {
				cs.Rootfs = &statsapi.FsStats{Time: metav1.NewTime(time.Unix(0, wl.Timestamp)), UsedBytes: u64(wl.UsedBytes),
					InodesUsed: u64(wl.InodesUsed)}
			}
			ps.Containers = append(ps.Containers, cs)
		}
		out = append(out, ps)
	}
	return out, nil
}

func u64(v *runtimeapi.UInt64Value) *uint64 {
	if v == nil {
		return nil
	}
	return ptr.To(v.Value)
}

func cpu(c *runtimeapi.CpuUsage) *statsapi.CPUStats {
	if c == nil {
		return nil
	}
	return &statsapi.CPUStats{Time: metav1.NewTime(time.Unix(0, c.Timestamp)), UsageCoreNanoSeconds: u64(c.UsageCoreNanoSeconds),
		UsageNanoCores: u64(c.UsageNanoCores)}
}

func memory(m *runtimeapi.MemoryUsage) *statsapi.MemoryStats {
	if m == nil {
		return nil
	}
	return &statsapi.MemoryStats{Time: metav1.NewTime(time.Unix(0, m.Timestamp)), WorkingSetBytes: u64(m.WorkingSetBytes),
		UsageBytes: u64(m.UsageBytes), RSSBytes: u64(m.RssBytes), AvailableBytes: u64(m.AvailableBytes),
		PageFaults: u64(m.PageFaults), MajorPageFaults: u64(m.MajorPageFaults)}
}

func iface(n *runtimeapi.NetworkInterfaceUsage) statsapi.InterfaceStats {
	return statsapi.InterfaceStats{Name: n.Name, RxBytes: u64(n.RxBytes), RxErrors: u64(n.RxErrors), TxBytes: u64(n.TxBytes),
		TxErrors: u64(n.TxErrors)}
}
