package criserver

import (
	"context"
	"encoding/json"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerStatus reports state, times, exit code, image and mounts.
func (s *Service) ContainerStatus(ctx context.Context, r *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	rec, err := s.getContainer(ctx, r.GetContainerId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ContainerStatusResponse{Status: containerStatus(rec)}
	if r.GetVerbose() {
		b, _ := json.Marshal(map[string]any{"pid": rec.PID, "sandboxID": rec.SandboxID, "config": rec.Config})
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

// containerImageSpec is the image a container reports: the name it was
// created from, resolved (see CreateContainer), else as requested.
func containerImageSpec(rec *containerRec) *runtime.ImageSpec {
	if rec.Image != "" {
		return &runtime.ImageSpec{Image: rec.Image, Annotations: rec.Config.GetImage().GetAnnotations()}
	}
	return rec.Config.GetImage()
}

func containerStatus(rec *containerRec) *runtime.ContainerStatus {
	c := rec.Config
	st := &runtime.ContainerStatus{
		Id: rec.ID, Metadata: c.GetMetadata(), State: rec.State,
		CreatedAt: rec.Created, StartedAt: rec.Started, FinishedAt: rec.Finished,
		Image: containerImageSpec(rec), ImageRef: rec.ImageRef, ImageId: rec.ImageRef,
		Labels: c.GetLabels(), Annotations: c.GetAnnotations(), Mounts: c.GetMounts(), LogPath: rec.LogPath,
		User: &runtime.ContainerUser{Linux: parseUser(rec.Labels[labelUser])},
	}
	if rec.State == runtime.ContainerState_CONTAINER_EXITED {
		st.ExitCode, st.Reason = rec.ExitCode, rec.Reason
	}
	if r := c.GetLinux().GetResources(); r != nil {
		st.Resources = &runtime.ContainerResources{Linux: r}
	}
	return st
}
