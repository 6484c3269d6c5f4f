package criserver

import (
	"context"
	"sort"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists sandboxes matching the filter.
func (s *Service) ListPodSandbox(ctx context.Context, r *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	all, err := s.listSandboxes(ctx)
	if err != nil {
		return nil, toStatus(err, "list sandboxes")
	}
	out := &runtime.ListPodSandboxResponse{}
	f := r.GetFilter()
	for _, sb := range all {
		if f != nil {
			if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
				continue
			}
			if f.GetState() != nil && f.GetState().GetState() != sb.State {
				continue
			}
			if !labelsMatch(sb.Config.GetLabels(), f.GetLabelSelector()) {
				continue
			}
		}
		out.Items = append(out.Items, &runtime.PodSandbox{Id: sb.ID, Metadata: sb.Config.GetMetadata(), State: sb.State,
			CreatedAt: sb.Created, Labels: sb.Config.GetLabels(), Annotations: sb.Config.GetAnnotations()})
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].CreatedAt < out.Items[j].CreatedAt })
	return out, nil
}
