package criserver

import (
	"context"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes every record of the image; removing a missing image succeeds.
func (s *Service) RemoveImage(ctx context.Context, r *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	ci, err := s.findImage(ctx, r.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err, "remove image")
	}
	names := append(append([]string{}, ci.Tags...), ci.Digests...)
	names = append(names, ci.ID)
	for i, n := range names {
		var opts []images.DeleteOpt
		if i == len(names)-1 {
			opts = append(opts, images.SynchronousDelete()) // collect content once the last name goes
		}
		if err := s.client.ImageService().Delete(s.ctx(ctx), n, opts...); err != nil && !errdefs.IsNotFound(err) {
			return nil, toStatus(err, "remove image "+n)
		}
	}
	return &runtime.RemoveImageResponse{}, nil
}
