package criserver

import (
	"context"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox stops the sandbox, removes its containers, the pause
// container and its files. A missing sandbox succeeds.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := s.getSandbox(ctx, r.GetPodSandboxId())
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		return &runtime.RemovePodSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	cs, err := s.listContainersOf(ctx, sb.ID)
	if err != nil {
		return nil, toStatus(err, "list containers")
	}
	for _, c := range cs {
		if err := s.removeContainer(ctx, c); err != nil {
			return nil, err
		}
	}
	if err := s.removeImageVolumes(ctx, sb.ID); err != nil {
		return nil, toStatus(err, "image volumes")
	}
	cctx := s.ctx(ctx)
	if ctr, err := s.client.LoadContainer(cctx, sb.ID); err == nil {
		if err := ctr.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return nil, toStatus(err, "delete pause container")
		}
	}
	if err := s.client.SandboxStore().Delete(cctx, sb.ID); err != nil && !errdefs.IsNotFound(err) {
		return nil, toStatus(err, "delete sandbox record")
	}
	if err := s.host.UnmountShm(s.sandboxShm(sb.ID)); err != nil {
		return nil, toStatus(err, "sandbox /dev/shm")
	}
	_ = os.RemoveAll(s.sandboxDir(sb.ID))
	s.unindexSandbox(sb.ID)
	s.dropLive(sb.ID)
	s.release(sb.Labels[labelName])
	return &runtime.RemovePodSandboxResponse{}, nil
}
