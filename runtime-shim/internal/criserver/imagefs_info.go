package criserver

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the snapshotter's usage, summed over its snapshots.
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	ctx = s.ctx(ctx)
	sn := s.client.SnapshotService(s.cfg.Snapshotter)
	var used, inodes int64
	err := sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		u, err := sn.Usage(ctx, info.Name)
		if err == nil {
			used += u.Size
			inodes += u.Inodes
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err, "walk snapshots")
	}
	mount := s.snapshotRoot(ctx)
	fs := &runtime.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtime.FilesystemIdentifier{Mountpoint: mount},
		UsedBytes:  &runtime.UInt64Value{Value: uint64(used)},
		InodesUsed: &runtime.UInt64Value{Value: uint64(inodes)},
	}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{fs}, ContainerFilesystems: []*runtime.FilesystemUsage{fs}}, nil
}

// snapshotRoot asks containerd where the snapshotter keeps its data, so the
// kubelet measures the right filesystem.
func (s *Service) snapshotRoot(ctx context.Context) string {
	resp, err := s.client.IntrospectionService().Plugins(ctx, `type=="io.containerd.snapshotter.v1",id=="`+s.cfg.Snapshotter+`"`)
	if err == nil {
		for _, p := range resp.Plugins {
			if r := p.Exports["root"]; r != "" {
				return r
			}
		}
	}
	return s.cfg.RootDir
}
