package criserver

import (
	"context"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer force-stops and deletes the container and its snapshot;
// removing a missing container succeeds.
func (s *Service) RemoveContainer(ctx context.Context, r *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if st, ok := status.FromError(err); ok && st.Code() == codes.NotFound {
		return &runtime.RemoveContainerResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := s.removeContainer(ctx, rec); err != nil {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func (s *Service) removeContainer(ctx context.Context, rec *containerRec) error {
	if err := s.stopContainer(ctx, rec, 0); err != nil {
		return err
	}
	defer s.opLk.lock(rec.ID)()
	cctx := s.ctx(ctx)
	ctr, err := s.client.LoadContainer(cctx, rec.ID)
	if errdefs.IsNotFound(err) {
		s.unindexContainer(rec.ID)
		return nil
	} else if err != nil {
		return toStatus(err, "load container")
	}
	if t, err := ctr.Task(cctx, nil); err == nil {
		if _, err := t.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return toStatus(err, "delete task")
		}
	}
	if err := ctr.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return toStatus(err, "delete container")
	}
	s.unindexContainer(rec.ID)
	s.dropLive(rec.ID)
	s.mu.Lock()
	if c := s.ios[rec.ID]; c != nil {
		c.close()
		delete(s.ios, rec.ID)
	}
	s.mu.Unlock()
	_ = os.RemoveAll(filepath.Join(s.fifoDir(), rec.ID))
	s.release(rec.Labels[labelName])
	s.emit(ctx, rec.ID, rec.SandboxID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	s.log.Info("container removed", zap.String("id", rec.ID), zap.Stringer("state", rec.State),
		zap.Int64("created", rec.Created), zap.Int64("started", rec.Started), zap.Int64("finished", rec.Finished))
	return nil
}
