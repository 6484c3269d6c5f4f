package criserver

import (
	"context"
	"encoding/json"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStatus returns an empty response (not an error) for a missing image, as the CRI requires.
func (s *Service) ImageStatus(ctx context.Context, r *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	ci, err := s.findImage(ctx, r.GetImage().GetImage())
	if errdefs.IsNotFound(err) {
		return &runtime.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err, "image status")
	}
	resp := &runtime.ImageStatusResponse{Image: s.toCRIImage(ctx, ci)}
	if r.GetVerbose() {
		if spec, err := ci.ImageConfig.Spec(s.ctx(ctx)); err == nil {
			b, _ := json.Marshal(map[string]any{"imageSpec": spec})
			resp.Info = map[string]string{"info": string(b)}
		}
	}
	return resp, nil
}
