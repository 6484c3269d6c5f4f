package criserver

import (
	"context"
	"fmt"
	"google.golang.org/protobuf/proto"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog reopens the log after the kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if rec.State != runtime.ContainerState_CONTAINER_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is not running", rec.ID)
	}
	s.mu.Lock()
	cio := s.ios[rec.ID]
	s.mu.Unlock()
	if cio == nil || cio.log == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s has no log file", rec.ID)
	}
	if err := cio.log.Reopen(); err != nil {
		return nil, toStatus(err, "reopen log")
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

// UpdateContainerResources updates the cgroup of a running container and
// the stored spec, so a later start keeps the new limits.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	res := r.GetLinux()
	if res == nil {
		return &runtime.UpdateContainerResourcesResponse{}, nil
	}
	defer s.opLk.lock(rec.ID)()
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, rec.ID)
	if err != nil {
		return nil, toStatus(err, "load container")
	}
	spec, err := ctr.Spec(cctx)
	if err != nil {
		return nil, toStatus(err, "container spec")
	}
	if err := oci.ApplyOpts(cctx, nil, nil, spec, resourceOpts(res, s.oom)...); err != nil {
		return nil, toStatus(err, "apply resources")
	}
	if err := ctr.Update(cctx, func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		a, err := typeurl.MarshalAny(spec)
		if err != nil {
			return err
		}
		c.Spec = a
		return nil
	}); err != nil {
		return nil, toStatus(err, "store spec")
	}
	// A copy: rec.Config may be the one kept in memory (objMeta), which is never changed in place.
	cfg := proto.Clone(rec.Config).(*runtime.ContainerConfig)
	cfg.Linux = &runtime.LinuxContainerConfig{Resources: res, SecurityContext: rec.Config.GetLinux().GetSecurityContext()}
	cfgAny, err := typeurl.MarshalAny(cfg)
	if err == nil {
		if ctr.Update(cctx, containerd.UpdateContainerOpts(func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
			c.Extensions[extContainerCfg] = cfgAny
			return nil
		})) == nil {
			s.noteConfig(rec.ID, cfg)
		}
	}
	if rec.State == runtime.ContainerState_CONTAINER_RUNNING {
		task, err := ctr.Task(cctx, nil)
		if err == nil {
			if err := task.Update(cctx, containerd.WithResources(spec.Linux.Resources)); err != nil {
				return nil, toStatus(err, "update task resources")
			}
		}
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}

var _ = specs.Spec{}

// UpdatePodSandboxResources is informational for runtimes; the kubelet
// already resized the Pod cgroup. Accept it for a known sandbox.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtime.UpdatePodSandboxResourcesRequest) (*runtime.UpdatePodSandboxResourcesResponse, error) {
	if _, err := s.getSandbox(ctx, r.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return &runtime.UpdatePodSandboxResourcesResponse{}, nil
}

// RuntimeConfig reports the cgroup driver so the kubelet can match it.
func (s *Service) RuntimeConfig(ctx context.Context, _ *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	d := runtime.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == "systemd" {
		d = runtime.CgroupDriver_SYSTEMD
	}
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: d}}, nil
}

// UpdateRuntimeConfig accepts the Pod CIDR; the CNI config (host-local
// ranges) is what assigns addresses, so nothing is stored.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}

// CheckpointContainer is not supported: it needs CRIU, absent here.
func (s *Service) CheckpointContainer(context.Context, *runtime.CheckpointContainerRequest) (*runtime.CheckpointContainerResponse, error) {
	return nil, status.Error(codes.Unimplemented, "CheckpointContainer: checkpointing needs CRIU, which this runtime does not support")
}

// CheckpointPod is not supported (see CheckpointContainer).
func (s *Service) CheckpointPod(context.Context, *runtime.CheckpointPodRequest) (*runtime.CheckpointPodResponse, error) {
	return nil, status.Error(codes.Unimplemented, "CheckpointPod: checkpointing needs CRIU, which this runtime does not support")
}

// RestorePod is not supported (see CheckpointContainer).
func (s *Service) RestorePod(context.Context, *runtime.RestorePodRequest) (*runtime.RestorePodResponse, error) {
	return nil, status.Error(codes.Unimplemented, "RestorePod: checkpoint/restore needs CRIU, which this runtime does not support")
}

// The Stream* list calls send the whole list in one message.

func (s *Service) StreamPodSandboxes(r *runtime.StreamPodSandboxesRequest, st grpc.ServerStreamingServer[runtime.StreamPodSandboxesResponse]) error {
	resp, err := s.ListPodSandbox(st.Context(), &runtime.ListPodSandboxRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamPodSandboxesResponse{PodSandboxes: resp.Items})
}

func (s *Service) StreamContainers(r *runtime.StreamContainersRequest, st grpc.ServerStreamingServer[runtime.StreamContainersResponse]) error {
	resp, err := s.ListContainers(st.Context(), &runtime.ListContainersRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamContainersResponse{Containers: resp.Containers})
}

func (s *Service) StreamContainerStats(r *runtime.StreamContainerStatsRequest, st grpc.ServerStreamingServer[runtime.StreamContainerStatsResponse]) error {
	resp, err := s.ListContainerStats(st.Context(), &runtime.ListContainerStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamContainerStatsResponse{ContainerStats: resp.Stats})
}

func (s *Service) StreamPodSandboxStats(r *runtime.StreamPodSandboxStatsRequest, st grpc.ServerStreamingServer[runtime.StreamPodSandboxStatsResponse]) error {
	resp, err := s.ListPodSandboxStats(st.Context(), &runtime.ListPodSandboxStatsRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamPodSandboxStatsResponse{PodSandboxStats: resp.Stats})
}

func (s *Service) StreamImages(r *runtime.StreamImagesRequest, st grpc.ServerStreamingServer[runtime.StreamImagesResponse]) error {
	resp, err := s.ListImages(st.Context(), &runtime.ListImagesRequest{Filter: r.GetFilter()})
	if err != nil {
		return err
	}
	return st.Send(&runtime.StreamImagesResponse{Images: resp.Images})
}

var _ = fmt.Sprint
