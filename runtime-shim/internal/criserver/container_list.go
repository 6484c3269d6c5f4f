package criserver

import (
	"context"
	"sort"
	"strings"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists containers matching the filter (ID prefix, state, sandbox, labels).
func (s *Service) ListContainers(ctx context.Context, r *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	all, err := s.listContainers(ctx)
	if err != nil {
		return nil, toStatus(err, "list containers")
	}
	out := &runtime.ListContainersResponse{}
	for _, rec := range all {
		if !containerMatches(rec, r.GetFilter()) {
			continue
		}
		c := rec.Config
		out.Containers = append(out.Containers, &runtime.Container{
			Id: rec.ID, PodSandboxId: rec.SandboxID, Metadata: c.GetMetadata(), Image: containerImageSpec(rec),
			ImageRef: rec.ImageRef, ImageId: rec.ImageRef, State: rec.State, CreatedAt: rec.Created,
			Labels: c.GetLabels(), Annotations: c.GetAnnotations(),
		})
	}
	sort.Slice(out.Containers, func(i, j int) bool { return out.Containers[i].CreatedAt < out.Containers[j].CreatedAt })
	return out, nil
}

func containerMatches(rec *containerRec, f *runtime.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
		return false
	}
	if f.GetPodSandboxId() != "" && !strings.HasPrefix(rec.SandboxID, f.GetPodSandboxId()) {
		return false
	}
	if f.GetState() != nil && f.GetState().GetState() != rec.State {
		return false
	}
	return labelsMatch(rec.Config.GetLabels(), f.GetLabelSelector())
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
