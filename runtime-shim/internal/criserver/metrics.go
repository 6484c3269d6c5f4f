package criserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pod sandbox metrics: the cAdvisor-named series the kubelet serves on
// /metrics/cadvisor when PodAndContainerStatsFromCRI is on, computed from
// the task's cgroup, /proc of its processes, the container's filesystem and
// the Pod's network namespace. Not covered (as containerd's CRI): hugetlb,
// pressure (PSI: cgroup v2 only, and this host is v1), cpu quota spec,
// memory reservation and ulimits.

var (
	metricBaseLabels = []string{"pod", "namespace", "container", "id", "image"}
	metricNetLabels  = append(append([]string{}, metricBaseLabels...), "interface")
	metricDevLabels  = append(append([]string{}, metricBaseLabels...), "device")
	metricFailLabels = append(append([]string{}, metricBaseLabels...), "failure_type", "scope")
)

type metricDef struct {
	name, help string
	counter    bool
	labels     []string
}

var metricDefs = []metricDef{
	{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", true, metricBaseLabels},
	{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", true, metricBaseLabels},
	{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", true, metricBaseLabels},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", true, metricBaseLabels},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", true, metricBaseLabels},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", true, metricBaseLabels},
	{"container_memory_cache", "Number of bytes of page cache memory.", false, metricBaseLabels},
	{"container_memory_rss", "Size of RSS in bytes.", false, metricBaseLabels},
	{"container_memory_kernel_usage", "Size of kernel memory allocated to the container in bytes.", false, metricBaseLabels},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", false, metricBaseLabels},
	{"container_memory_swap", "Container swap usage in bytes.", false, metricBaseLabels},
	{"container_memory_failcnt", "Number of memory usage hits limits.", true, metricBaseLabels},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", false, metricBaseLabels},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", false, metricBaseLabels},
	{"container_memory_working_set_bytes", "Current working set in bytes.", false, metricBaseLabels},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", true, metricFailLabels},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", true, metricBaseLabels},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", true, append(append([]string{}, metricDevLabels...), "operation")},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", true, metricDevLabels},
	{"container_fs_reads_total", "Cumulative count of reads completed.", true, metricDevLabels},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", true, metricDevLabels},
	{"container_fs_writes_total", "Cumulative count of writes completed.", true, metricDevLabels},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", false, metricDevLabels},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", false, metricDevLabels},
	{"container_fs_inodes_free", "Number of available inodes.", false, metricDevLabels},
	{"container_fs_inodes_total", "Number of inodes.", false, metricDevLabels},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", true, metricNetLabels},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", true, metricNetLabels},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", true, metricNetLabels},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", true, metricNetLabels},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", true, metricNetLabels},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", true, metricNetLabels},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", true, metricNetLabels},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", true, metricNetLabels},
	{"container_processes", "Number of processes running inside the container.", false, metricBaseLabels},
	{"container_threads", "Number of threads running inside the container.", false, metricBaseLabels},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 if unlimited.", false, metricBaseLabels},
	{"container_file_descriptors", "Number of open file descriptors for the container.", false, metricBaseLabels},
	{"container_sockets", "Number of open sockets for the container.", false, metricBaseLabels},
	{"container_last_seen", "Last time a container was seen by the exporter.", false, metricBaseLabels},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", false, metricBaseLabels},
	{"container_spec_cpu_period", "CPU period of the container.", false, metricBaseLabels},
	{"container_spec_cpu_shares", "CPU share of the container.", false, metricBaseLabels},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", false, metricBaseLabels},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", false, metricBaseLabels},
}

var metricTypes = func() map[string]runtime.MetricType {
	m := map[string]runtime.MetricType{}
	for _, d := range metricDefs {
		m[d.name] = runtime.MetricType_GAUGE
		if d.counter {
			m[d.name] = runtime.MetricType_COUNTER
		}
	}
	return m
}()

// ListMetricDescriptors lists the series ListPodSandboxMetrics returns.
func (s *Service) ListMetricDescriptors(context.Context, *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	out := &runtime.ListMetricDescriptorsResponse{}
	for _, d := range metricDefs {
		out.Descriptors = append(out.Descriptors, &runtime.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return out, nil
}

// ListPodSandboxMetrics returns the metrics of every ready sandbox and its running containers.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, _ *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	sbs, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, toStatus(err, "list sandboxes")
	}
	cs, err := s.listContainers(ctx)
	if err != nil {
		return nil, toStatus(err, "list containers")
	}
	out := &runtime.ListPodSandboxMetricsResponse{}
	for _, sb := range sbs {
		if sb.State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		out.PodMetrics = append(out.PodMetrics, s.podMetrics(ctx, sb, cs))
	}
	return out, nil
}

// StreamPodSandboxMetrics sends ListPodSandboxMetrics's answer in one message.
func (s *Service) StreamPodSandboxMetrics(_ *runtime.StreamPodSandboxMetricsRequest, st grpc.ServerStreamingServer[runtime.StreamPodSandboxMetricsResponse]) error {
	resp, err := s.ListPodSandboxMetrics(st.Context(), &runtime.ListPodSandboxMetricsRequest{})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamPodSandboxMetricsResponse{PodSandboxMetrics: resp.PodMetrics})
}

func (s *Service) podMetrics(ctx context.Context, sb *sandboxRec, cs []*containerRec) *runtime.PodSandboxMetrics {
	now := time.Now()
	md := sb.Config.GetMetadata()
	pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
	// The Pod's network counters belong to the Pod, reported as cAdvisor
	// does under the pause container ("POD").
	if sb.PID != 0 {
		if f, err := os.Open(fmt.Sprintf("/proc/%d/net/dev", sb.PID)); err == nil {
			ifs, err := parseNetDev(f)
			_ = f.Close()
			if err == nil {
				base := []string{md.GetName(), md.GetNamespace(), "POD", sb.ID, s.cfg.SandboxImage}
				pm.Metrics = networkMetrics(ifs, base, now)
			}
		}
	}
	for _, c := range cs {
		if c.SandboxID != sb.ID || c.State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		in := s.gatherContainer(ctx, c)
		base := []string{md.GetName(), md.GetNamespace(), c.Config.GetMetadata().GetName(), c.ID, c.Image}
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtime.ContainerMetrics{
			ContainerId: c.ID, Metrics: containerMetrics(in, c, base, now)})
	}
	return pm
}

// containerInput is what containerMetrics reads, gathered from the OS.
type containerInput struct {
	V1        *v1stats.Metrics
	V2        *v2stats.Metrics
	Processes uint64
	Threads   uint64
	FDs       uint64
	Sockets   uint64
	FS        *fsInput
}

type fsInput struct {
	Device                  string
	UsedBytes, LimitBytes   uint64
	InodesFree, InodesTotal uint64
}

func (s *Service) gatherContainer(ctx context.Context, c *containerRec) containerInput {
	var in containerInput
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, c.ID)
	if err != nil {
		return in
	}
	task, err := ctr.Task(cctx, nil)
	if err != nil {
		return in
	}
	if m, err := task.Metrics(cctx); err == nil && m.Data != nil {
		if d, err := typeurl.UnmarshalAny(m.Data); err == nil {
			switch d := d.(type) {
			case *v1stats.Metrics:
				in.V1 = d
			case *v2stats.Metrics:
				in.V2 = d
			}
		}
	}
	if pids, err := task.Pids(cctx); err == nil {
		in.Processes = uint64(len(pids))
		for _, p := range pids {
			fds, socks := countFDs(p.Pid)
			in.FDs += fds
			in.Sockets += socks
		}
	}
	var st syscall.Statfs_t
	if c.PID != 0 && syscall.Statfs(fmt.Sprintf("/proc/%d/root", c.PID), &st) == nil {
		fs := &fsInput{Device: s.cfg.Snapshotter, LimitBytes: st.Blocks * uint64(st.Bsize),
			InodesFree: st.Ffree, InodesTotal: st.Files}
		if u, err := s.client.SnapshotService(s.cfg.Snapshotter).Usage(cctx, c.ID); err == nil {
			fs.UsedBytes = uint64(u.Size)
		}
		in.FS = fs
	}
	return in
}

// countFDs counts a process's open files and, of those, sockets.
func countFDs(pid uint32) (fds, sockets uint64) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range ents {
		fds++
		if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	return fds, sockets
}

// containerMetrics turns the gathered input into samples; pure, so the
// mapping is unit-tested.
func containerMetrics(in containerInput, c *containerRec, base []string, now time.Time) []*runtime.Metric {
	var out []*runtime.Metric
	add := func(name string, v uint64, extra ...string) {
		out = append(out, &runtime.Metric{Name: name, Timestamp: now.UnixNano(), MetricType: metricTypes[name],
			LabelValues: append(append([]string{}, base...), extra...), Value: &runtime.UInt64Value{Value: v}})
	}
	sec := func(ns uint64) uint64 { return ns / uint64(time.Second) }
	switch {
	case in.V1 != nil:
		m := in.V1
		if u := m.GetCPU().GetUsage(); u != nil {
			add("container_cpu_usage_seconds_total", sec(u.Total))
			add("container_cpu_user_seconds_total", sec(u.User))
			add("container_cpu_system_seconds_total", sec(u.Kernel))
		}
		if t := m.GetCPU().GetThrottling(); t != nil {
			add("container_cpu_cfs_periods_total", t.Periods)
			add("container_cpu_cfs_throttled_periods_total", t.ThrottledPeriods)
			add("container_cpu_cfs_throttled_seconds_total", sec(t.ThrottledTime))
		}
		if mem := m.GetMemory(); mem != nil {
			usage := mem.GetUsage().GetUsage()
			ws := usage
			if mem.TotalInactiveFile < ws {
				ws -= mem.TotalInactiveFile
			} else {
				ws = 0
			}
			add("container_memory_cache", mem.TotalCache)
			add("container_memory_rss", mem.TotalRSS)
			add("container_memory_mapped_file", mem.TotalMappedFile)
			add("container_memory_kernel_usage", mem.GetKernel().GetUsage())
			add("container_memory_swap", mem.GetSwap().GetUsage())
			add("container_memory_failcnt", mem.GetUsage().GetFailcnt())
			add("container_memory_usage_bytes", usage)
			add("container_memory_max_usage_bytes", mem.GetUsage().GetMax())
			add("container_memory_working_set_bytes", ws)
			add("container_memory_failures_total", mem.TotalPgFault-min(mem.TotalPgFault, mem.TotalPgMajFault), "pgfault", "container")
			add("container_memory_failures_total", mem.TotalPgMajFault, "pgmajfault", "container")
		}
		add("container_oom_events_total", m.GetMemoryOomControl().GetOomKill())
		if p := m.GetPids(); p != nil {
			add("container_threads", p.Current)
			add("container_threads_max", p.Limit)
		}
		for _, e := range m.GetBlkio().GetIoServiceBytesRecursive() {
			dev := fmt.Sprintf("%d:%d", e.Major, e.Minor)
			add("container_blkio_device_usage_total", e.Value, dev, e.Op)
			switch e.Op {
			case "Read":
				add("container_fs_reads_bytes_total", e.Value, dev)
			case "Write":
				add("container_fs_writes_bytes_total", e.Value, dev)
			}
		}
		for _, e := range m.GetBlkio().GetIoServicedRecursive() {
			dev := fmt.Sprintf("%d:%d", e.Major, e.Minor)
			switch e.Op {
			case "Read":
				add("container_fs_reads_total", e.Value, dev)
			case "Write":
				add("container_fs_writes_total", e.Value, dev)
			}
		}
	case in.V2 != nil:
		m := in.V2
		if c := m.GetCPU(); c != nil {
			add("container_cpu_usage_seconds_total", c.UsageUsec/1e6)
			add("container_cpu_user_seconds_total", c.UserUsec/1e6)
			add("container_cpu_system_seconds_total", c.SystemUsec/1e6)
			add("container_cpu_cfs_periods_total", c.NrPeriods)
			add("container_cpu_cfs_throttled_periods_total", c.NrThrottled)
			add("container_cpu_cfs_throttled_seconds_total", c.ThrottledUsec/1e6)
		}
		if mem := m.GetMemory(); mem != nil {
			ws := mem.Usage
			if mem.InactiveFile < ws {
				ws -= mem.InactiveFile
			}
			add("container_memory_cache", mem.File)
			add("container_memory_rss", mem.Anon)
			add("container_memory_mapped_file", mem.FileMapped)
			add("container_memory_kernel_usage", mem.KernelStack+mem.Slab+mem.Sock)
			add("container_memory_swap", mem.SwapUsage)
			add("container_memory_failcnt", 0)
			add("container_memory_usage_bytes", mem.Usage)
			add("container_memory_max_usage_bytes", mem.MaxUsage)
			add("container_memory_working_set_bytes", ws)
			add("container_memory_failures_total", mem.Pgfault-min(mem.Pgfault, mem.Pgmajfault), "pgfault", "container")
			add("container_memory_failures_total", mem.Pgmajfault, "pgmajfault", "container")
		}
		add("container_oom_events_total", m.GetMemoryEvents().GetOomKill())
		if p := m.GetPids(); p != nil {
			add("container_threads", p.Current)
			add("container_threads_max", p.Limit)
		}
	}
	add("container_processes", in.Processes)
	add("container_file_descriptors", in.FDs)
	add("container_sockets", in.Sockets)
	if fs := in.FS; fs != nil {
		add("container_fs_usage_bytes", fs.UsedBytes, fs.Device)
		add("container_fs_limit_bytes", fs.LimitBytes, fs.Device)
		add("container_fs_inodes_free", fs.InodesFree, fs.Device)
		add("container_fs_inodes_total", fs.InodesTotal, fs.Device)
	}
	add("container_last_seen", uint64(now.Unix()))
	add("container_start_time_seconds", uint64(c.Started/int64(time.Second)))
	r := c.Config.GetLinux().GetResources()
	add("container_spec_cpu_period", uint64(r.GetCpuPeriod()))
	add("container_spec_cpu_shares", uint64(r.GetCpuShares()))
	add("container_spec_memory_limit_bytes", uint64(r.GetMemoryLimitInBytes()))
	add("container_spec_memory_swap_limit_bytes", uint64(r.GetMemorySwapLimitInBytes()))
	return out
}

// netDev is one interface's line of /proc/net/dev.
type netDev struct {
	Name                               string
	RxBytes, RxPackets, RxErrs, RxDrop uint64
	TxBytes, TxPackets, TxErrs, TxDrop uint64
}

// parseNetDev reads /proc/<pid>/net/dev (the namespace of pid), without lo.
func parseNetDev(r io.Reader) ([]netDev, error) {
	var out []netDev
	sc := bufio.NewScanner(r)
	for n := 0; sc.Scan(); n++ {
		if n < 2 { // two header lines
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return nil, fmt.Errorf("net/dev line %d: no interface name", n+1)
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("net/dev line %d: %d fields, want 16", n+1, len(f))
		}
		v := make([]uint64, 16)
		for i := range v {
			x, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("net/dev line %d: %w", n+1, err)
			}
			v[i] = x
		}
		if name == "lo" {
			continue
		}
		out = append(out, netDev{Name: name, RxBytes: v[0], RxPackets: v[1], RxErrs: v[2], RxDrop: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrs: v[10], TxDrop: v[11]})
	}
	return out, sc.Err()
}

func networkMetrics(ifs []netDev, base []string, now time.Time) []*runtime.Metric {
	var out []*runtime.Metric
	for _, d := range ifs {
		for _, kv := range []struct {
			name string
			v    uint64
		}{
			{"container_network_receive_bytes_total", d.RxBytes},
			{"container_network_receive_packets_total", d.RxPackets},
			{"container_network_receive_packets_dropped_total", d.RxDrop},
			{"container_network_receive_errors_total", d.RxErrs},
			{"container_network_transmit_bytes_total", d.TxBytes},
			{"container_network_transmit_packets_total", d.TxPackets},
			{"container_network_transmit_packets_dropped_total", d.TxDrop},
			{"container_network_transmit_errors_total", d.TxErrs},
		} {
			out = append(out, &runtime.Metric{Name: kv.name, Timestamp: now.UnixNano(), MetricType: metricTypes[kv.name],
				LabelValues: append(append([]string{}, base...), d.Name), Value: &runtime.UInt64Value{Value: kv.v}})
		}
	}
	return out
}
