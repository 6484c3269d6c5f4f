package kubelet

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/podworker"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
	"github.com/nodesuite/nodesuite/kubelet/internal/server"
)

// serverHost answers the kubelet API's questions from the workers and the runtime.
type serverHost struct {
	workers *podworker.Workers
	status  interface {
		Last(uid types.UID) (v1.PodStatus, bool)
	}
	rt *runtime.Runtime
}

func (h serverHost) Pods() []*v1.Pod { return h.workers.Active() }

// Container picks the instance as upstream's validateContainerLogStatus
// does, from the status last reported: previous is the last terminated
// one; otherwise the running one, the terminated one, or (while waiting to
// restart) the last terminated one.
func (h serverHost) Container(ctx context.Context, uid types.UID, name string, previous bool) (*runtimeapi.ContainerStatus, error) {
	st, ok := h.status.Last(uid)
	if !ok {
		return nil, fmt.Errorf("%w: no status for pod %s yet", server.ErrNotFound, uid)
	}
	var cs *v1.ContainerStatus
	for _, list := range [][]v1.ContainerStatus{st.ContainerStatuses, st.InitContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				cs = &list[i]
			}
		}
	}
	if cs == nil {
		return nil, fmt.Errorf("%w: container %q of pod %s has no status", server.ErrNotFound, name, uid)
	}
	var id string
	last := cs.LastTerminationState.Terminated
	switch {
	case previous:
		if last == nil {
			return nil, fmt.Errorf("%w: previous terminated container %q", server.ErrNotFound, name)
		}
		id = last.ContainerID
	case cs.State.Running != nil:
		id = cs.ContainerID
	case cs.State.Terminated != nil:
		id = cs.State.Terminated.ContainerID
		if id == "" {
			id = cs.ContainerID
		}
	case last != nil:
		id = last.ContainerID
	default:
		return nil, fmt.Errorf("%w: container %q is waiting to start", server.ErrNotFound, name)
	}
	if _, raw, ok := strings.Cut(id, "://"); ok {
		id = raw
	}
	resp, err := h.rt.ContainerStatus(ctx, id, false)
	if err != nil || resp.GetStatus() == nil {
		return nil, fmt.Errorf("%w: container %s: %v", server.ErrNotFound, id, err)
	}
	return resp.GetStatus(), nil
}

func (h serverHost) Sandbox(ctx context.Context, uid types.UID) (string, error) {
	rp, err := h.rt.GetPod(ctx, uid)
	if err != nil {
		return "", err
	}
	if sb := rp.ActiveSandbox(); sb != nil {
		return sb.Id, nil
	}
	return "", fmt.Errorf("%w: no ready sandbox for pod %s", server.ErrNotFound, uid)
}
