package criserver

import (
	"context"
	"fmt"
	"slices"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/kernelversion"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"go.uber.org/zap"
)

// handlerFeatures is what the OCI runtime behind containerd can do, asked
// once at start the way containerd's CRI asks: the runtime shim's plugin
// info carries `runc features`.
type handlerFeatures struct {
	// RRO: runc knows the "rro" mount option and the kernel has mount_setattr (5.12).
	RRO bool
	// UserNS: runc can create user namespaces and idmapped mounts.
	UserNS bool
}

// DetectFeatures asks containerd what the runtime can do; must run before
// serving. On failure the optional features stay off (logged).
func (s *Service) DetectFeatures(ctx context.Context) {
	f, err := s.introspectFeatures(ctx)
	if err != nil {
		s.log.Warn("runtime features unknown: recursive read-only mounts and user namespaces stay off", zap.Error(err))
		return
	}
	s.feat = f
	s.log.Info("runtime features", zap.Bool("recursiveReadOnlyMounts", f.RRO), zap.Bool("userNamespaces", f.UserNS))
}

func (s *Service) introspectFeatures(ctx context.Context) (handlerFeatures, error) {
	opts, err := typeurl.MarshalAnyToProto(s.runcOptions())
	if err != nil {
		return handlerFeatures{}, err
	}
	resp, err := s.client.IntrospectionService().PluginInfo(s.ctx(ctx), string(plugins.RuntimePluginV2), "task",
		&apitypes.RuntimeRequest{RuntimePath: s.cfg.RuntimeType, Options: opts})
	if err != nil {
		return handlerFeatures{}, fmt.Errorf("runtime plugin info: %w", err)
	}
	if resp.Extra == nil {
		return handlerFeatures{}, fmt.Errorf("runtime plugin info has no runtime info")
	}
	var info apitypes.RuntimeInfo
	if err := typeurl.UnmarshalTo(resp.Extra, &info); err != nil {
		return handlerFeatures{}, fmt.Errorf("runtime info: %w", err)
	}
	if info.Features == nil {
		return handlerFeatures{}, fmt.Errorf("runtime info has no features")
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		return handlerFeatures{}, fmt.Errorf("runtime features: %w", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		return handlerFeatures{}, fmt.Errorf("runtime features of unknown type %T", v)
	}
	kernelRRO, err := kernelversion.GreaterEqualThan(kernelversion.KernelVersion{Kernel: 5, Major: 12})
	if err != nil {
		return handlerFeatures{}, err
	}
	return featuresFrom(f, kernelRRO), nil
}

func featuresFrom(f *features.Features, kernelRRO bool) handlerFeatures {
	out := handlerFeatures{RRO: kernelRRO && slices.Contains(f.MountOptions, "rro")}
	if l := f.Linux; l != nil && slices.Contains(l.Namespaces, "user") {
		if m := l.MountExtensions; m != nil && m.IDMap != nil && m.IDMap.Enabled != nil && *m.IDMap.Enabled {
			out.UserNS = true
		}
	}
	return out
}
