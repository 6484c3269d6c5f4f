package criserver

import (
	"context"
	"syscall"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/network"
)

// StopPodSandbox stops its containers and the pause task, tears down the
// network and removes the netns. Idempotent; a missing sandbox succeeds.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := s.getSandbox(ctx, r.GetPodSandboxId())
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		return &runtime.StopPodSandboxResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

func (s *Service) stopSandbox(ctx context.Context, sb *sandboxRec) error {
	cs, err := s.listContainersOf(ctx, sb.ID)
	if err != nil {
		return toStatus(err, "list containers")
	}
	for _, c := range cs {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			return err
		}
	}
	defer s.opLk.lock(sb.ID)()
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, sb.ID)
	if err != nil {
		return toStatus(ignoreNotFound(err), "load sandbox")
	}
	if task, err := ctr.Task(cctx, nil); err == nil {
		if ch, err := task.Wait(cctx); err == nil {
			if err := task.Kill(cctx, syscall.SIGKILL); err == nil {
				<-ch
			}
		}
		if _, err := task.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return toStatus(err, "delete pause task")
		}
	}
	if sb.NetNS != "" && sb.Labels[labelState] != "stopped" {
		pod := network.Pod{ID: sb.ID, NetNS: sb.NetNS, Name: sb.Config.GetMetadata().GetName(),
			Namespace: sb.Config.GetMetadata().GetNamespace(), UID: sb.Config.GetMetadata().GetUid(), PortMappings: sb.Config.GetPortMappings()}
		if err := s.net.Teardown(ctx, pod); err != nil {
			return toStatus(err, "pod network teardown")
		}
		if err := s.host.RemoveNetNS(sb.NetNS); err != nil {
			return toStatus(err, "remove netns")
		}
	}
	// Nothing runs in the Pod any more: free its /dev/shm (as containerd).
	if err := s.host.UnmountShm(s.sandboxShm(sb.ID)); err != nil {
		return toStatus(err, "sandbox /dev/shm")
	}
	stopped := map[string]string{labelState: "stopped"}
	if _, err := ctr.SetLabels(cctx, stopped); err != nil {
		return toStatus(err, "record sandbox state")
	}
	s.noteLabels(sb.ID, stopped)
	return nil
}
