package criserver

import (
	"context"
	"sort"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListImages lists the images this CRI pulled, one entry per image ID.
func (s *Service) ListImages(ctx context.Context, r *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	idx, err := s.imageIndex(ctx)
	if err != nil {
		return nil, toStatus(err, "list images")
	}
	var want *criImage
	if f := r.GetFilter().GetImage().GetImage(); f != "" {
		want, err = s.findImage(ctx, f)
		if err != nil {
			return &runtime.ListImagesResponse{}, nil
		}
	}
	out := &runtime.ListImagesResponse{}
	for _, ci := range idx {
		if want != nil && ci.ID != want.ID {
			continue
		}
		out.Images = append(out.Images, s.toCRIImage(ctx, ci))
	}
	sort.Slice(out.Images, func(i, j int) bool { return out.Images[i].Id < out.Images[j].Id })
	return out, nil
}
