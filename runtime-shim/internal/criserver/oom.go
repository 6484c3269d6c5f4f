package criserver

import (
	"context"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"go.uber.org/zap"
)

// WatchOOM records OOMKilled as the exit reason of containers whose task
// the kernel OOM-killed (containerd's runc shim reports /tasks/oom). It
// runs until ctx ends, resubscribing if the stream breaks.
func (s *Service) WatchOOM(ctx context.Context) {
	for ctx.Err() == nil {
		ch, errs := s.client.Subscribe(s.ctx(ctx), `topic=="/tasks/oom"`)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					s.log.Warn("containerd event stream", zap.Error(err))
				}
				break loop
			case env := <-ch:
				if env == nil || env.Event == nil {
					continue
				}
				ev, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				if oom, ok := ev.(*apievents.TaskOOM); ok {
					if err := s.setLabels(ctx, oom.ContainerID, map[string]string{labelReason: "OOMKilled"}); err != nil {
						s.log.Debug("recording OOM", zap.String("id", oom.ContainerID), zap.Error(err))
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
