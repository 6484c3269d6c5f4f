package criserver

import (
	"context"
	"encoding/json"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStatus reports state, IPs and namespace modes, and with
// the containers' statuses as the kubelet's Evented PLEG expects.
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.getSandbox(ctx, r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	resp := &runtime.PodSandboxStatusResponse{Status: sandboxStatus(sb)}
	if r.GetVerbose() {
		b, _ := json.Marshal(map[string]any{"pid": sb.PID, "netns": sb.NetNS, "config": sb.Config})
		resp.Info = map[string]string{"info": string(b)}
	}
	return resp, nil
}

func sandboxStatus(sb *sandboxRec) *runtime.PodSandboxStatus {
	c := sb.Config
	st := &runtime.PodSandboxStatus{
		Id: sb.ID, Metadata: c.GetMetadata(), State: sb.State, CreatedAt: sb.Created,
		Labels: c.GetLabels(), Annotations: c.GetAnnotations(),
		Linux: &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: c.GetLinux().GetSecurityContext().GetNamespaceOptions()}},
	}
	if st.Linux.Namespaces.Options == nil {
		st.Linux.Namespaces.Options = &runtime.NamespaceOption{}
	}
	if c.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtime.NamespaceMode_NODE && len(sb.IPs) > 0 {
		st.Network = &runtime.PodSandboxNetworkStatus{Ip: sb.IPs[0]}
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtime.PodIP{Ip: ip})
		}
	} else {
		st.Network = &runtime.PodSandboxNetworkStatus{}
	}
	return st
}
