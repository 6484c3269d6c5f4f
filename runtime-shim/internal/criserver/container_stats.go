package criserver

import (
	"context"
	"time"

	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStats reports CPU and memory from the task's cgroup metrics and
// the writable layer's usage from the snapshotter.
func (s *Service) ContainerStats(ctx context.Context, r *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: s.containerStats(ctx, rec)}, nil
}

// ListContainerStats reports stats for the running containers matching the filter.
func (s *Service) ListContainerStats(ctx context.Context, r *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	all, err := s.listContainers(ctx)
	if err != nil {
		return nil, toStatus(err, "list containers")
	}
	out := &runtime.ListContainerStatsResponse{}
	f := r.GetFilter()
	for _, rec := range all {
		cf := &runtime.ContainerFilter{}
		if f != nil {
			cf = &runtime.ContainerFilter{Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}
		}
		if !containerMatches(rec, cf) {
			continue
		}
		out.Stats = append(out.Stats, s.containerStats(ctx, rec))
	}
	return out, nil
}

func (s *Service) containerStats(ctx context.Context, rec *containerRec) *runtime.ContainerStats {
	now := time.Now().UnixNano()
	st := &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{Id: rec.ID, Metadata: rec.Config.GetMetadata(),
			Labels: rec.Config.GetLabels(), Annotations: rec.Config.GetAnnotations()},
		Cpu:    &runtime.CpuUsage{Timestamp: now},
		Memory: &runtime.MemoryUsage{Timestamp: now},
	}
	cctx := s.ctx(ctx)
	if u, err := s.client.SnapshotService(s.cfg.Snapshotter).Usage(cctx, rec.ID); err == nil {
		st.WritableLayer = &runtime.FilesystemUsage{Timestamp: now,
			FsId:       &runtime.FilesystemIdentifier{Mountpoint: s.snapshotRoot(cctx)},
			UsedBytes:  &runtime.UInt64Value{Value: uint64(u.Size)},
			InodesUsed: &runtime.UInt64Value{Value: uint64(u.Inodes)}}
	}
	if rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return st
	}
	cpu, mem, ok := s.taskMetrics(cctx, rec.ID)
	if ok {
		st.Cpu, st.Memory = cpu, mem
	}
	return st
}

// taskMetrics decodes cgroup v1 or v2 metrics of a task.
func (s *Service) taskMetrics(ctx context.Context, id string) (*runtime.CpuUsage, *runtime.MemoryUsage, bool) {
	ctr, err := s.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, nil, false
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, nil, false
	}
	m, err := task.Metrics(ctx)
	if err != nil || m.Data == nil {
		return nil, nil, false
	}
	ts := time.Now().UnixNano()
	if m.Timestamp != nil {
		ts = m.Timestamp.AsTime().UnixNano()
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, nil, false
	}
	cpu := &runtime.CpuUsage{Timestamp: ts}
	mem := &runtime.MemoryUsage{Timestamp: ts}
	switch d := data.(type) {
	case *v1stats.Metrics:
		if d.CPU != nil && d.CPU.Usage != nil {
			cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: d.CPU.Usage.Total}
		}
		if d.Memory != nil && d.Memory.Usage != nil {
			usage := d.Memory.Usage.Usage
			ws := usage
			if d.Memory.TotalInactiveFile < ws {
				ws -= d.Memory.TotalInactiveFile
			} else {
				ws = 0
			}
			mem.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			mem.UsageBytes = &runtime.UInt64Value{Value: usage}
			mem.RssBytes = &runtime.UInt64Value{Value: d.Memory.TotalRSS}
			mem.PageFaults = &runtime.UInt64Value{Value: d.Memory.TotalPgFault}
			mem.MajorPageFaults = &runtime.UInt64Value{Value: d.Memory.TotalPgMajFault}
		}
	case *v2stats.Metrics:
		if d.CPU != nil {
			cpu.UsageCoreNanoSeconds = &runtime.UInt64Value{Value: d.CPU.UsageUsec * 1000}
		}
		if d.Memory != nil {
			ws := d.Memory.Usage
			if d.Memory.InactiveFile < ws {
				ws -= d.Memory.InactiveFile
			}
			mem.WorkingSetBytes = &runtime.UInt64Value{Value: ws}
			mem.UsageBytes = &runtime.UInt64Value{Value: d.Memory.Usage}
			mem.RssBytes = &runtime.UInt64Value{Value: d.Memory.Anon}
		}
	default:
		return nil, nil, false
	}
	return cpu, mem, true
}

// PodSandboxStats sums the Pod's container stats and reports its network namespace.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.getSandbox(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st, err := s.sandboxStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats reports stats for the sandboxes matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	all, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, toStatus(err, "list sandboxes")
	}
	out := &runtime.ListPodSandboxStatsResponse{}
	for _, sb := range all {
		f := r.GetFilter()
		if f.GetId() != "" && f.GetId() != sb.ID || !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		if sb.State != runtime.PodSandboxState_SANDBOX_READY {
			continue
		}
		st, err := s.sandboxStats(ctx, sb)
		if err != nil {
			continue
		}
		out.Stats = append(out.Stats, st)
	}
	return out, nil
}

func (s *Service) sandboxStats(ctx context.Context, sb *sandboxRec) (*runtime.PodSandboxStats, error) {
	if sb.State != runtime.PodSandboxState_SANDBOX_READY {
		return nil, status.Errorf(codes.FailedPrecondition, "sandbox %s is not ready", sb.ID)
	}
	now := time.Now().UnixNano()
	lin := &runtime.LinuxPodSandboxStats{
		Cpu:    &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtime.UInt64Value{}},
		Memory: &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtime.UInt64Value{}, UsageBytes: &runtime.UInt64Value{}},
	}
	if cpu, mem, ok := s.taskMetrics(s.ctx(ctx), sb.ID); ok {
		addUsage(lin, cpu, mem)
	}
	cs, err := s.listContainers(ctx)
	if err != nil {
		return nil, toStatus(err, "list containers")
	}
	for _, c := range cs {
		if c.SandboxID != sb.ID || c.State != runtime.ContainerState_CONTAINER_RUNNING {
			continue
		}
		cst := s.containerStats(ctx, c)
		lin.Containers = append(lin.Containers, cst)
		addUsage(lin, cst.GetCpu(), cst.GetMemory())
	}
	return &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.ID, Metadata: sb.Config.GetMetadata(),
			Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations()},
		Linux: lin,
	}, nil
}

func addUsage(lin *runtime.LinuxPodSandboxStats, cpu *runtime.CpuUsage, mem *runtime.MemoryUsage) {
	lin.Cpu.UsageCoreNanoSeconds.Value += cpu.GetUsageCoreNanoSeconds().GetValue()
	lin.Memory.WorkingSetBytes.Value += mem.GetWorkingSetBytes().GetValue()
	lin.Memory.UsageBytes.Value += mem.GetUsageBytes().GetValue()
}
