package criserver

import (
	"context"
	"encoding/json"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/shared/version"
)

const (
	runtimeName       = "runtime-shim"
	criAPIVersion     = "v1"
	kubeAPIVersion    = "0.1.0"
	reasonNotServing  = "ContainerdNotServing"
	reasonCNINotReady = "NetworkPluginNotReady"
)

// Version reports the CRI version and this shim as the runtime.
func (s *Service) Version(ctx context.Context, _ *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{Version: kubeAPIVersion, RuntimeName: runtimeName,
		RuntimeVersion: version.Get().GitVersion, RuntimeApiVersion: criAPIVersion}, nil
}

// Status reports RuntimeReady (containerd serving) and NetworkReady (CNI config present).
func (s *Service) Status(ctx context.Context, r *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	rt := &runtime.RuntimeCondition{Type: runtime.RuntimeReady, Status: true}
	if ok, err := s.client.IsServing(s.ctx(ctx)); err != nil || !ok {
		rt.Status, rt.Reason = false, reasonNotServing
		if err != nil {
			rt.Message = err.Error()
		}
	}
	nw := &runtime.RuntimeCondition{Type: runtime.NetworkReady, Status: true}
	if err := s.net.Ready(); err != nil {
		nw.Status, nw.Reason, nw.Message = false, reasonCNINotReady, err.Error()
	}
	resp := &runtime.StatusResponse{Status: &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{rt, nw}},
		RuntimeHandlers: []*runtime.RuntimeHandler{{Name: "", Features: &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: s.feat.RRO, UserNamespaces: s.feat.UserNS}}},
		Features:        &runtime.RuntimeFeatures{SupplementalGroupsPolicy: true}}
	if r.GetVerbose() {
		b, _ := json.Marshal(s.cfg)
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}
