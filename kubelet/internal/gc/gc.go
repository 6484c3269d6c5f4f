// Package gc removes dead containers and sandboxes of live Pods as the
// upstream kubelet's container GC does with its defaults: one dead instance
// per container name is kept (it carries the last termination state and the
// restart count), older ones go, and so do sandboxes that are neither ready
// nor the newest.
package gc

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// Remover is the part of the CRI runtime GC needs.
type Remover interface {
	RemoveContainer(ctx context.Context, id string) error
	RemovePodSandbox(ctx context.Context, id string) error
}

// Prune removes what rp no longer needs; it returns how many containers and
// sandboxes it asked the runtime to remove (so the caller re-reads the Pod
// only when something changed) and the errors joined.
// Per container name it keeps the newest instance and the one before it if
// that one has exited: the newest gives the status's state, the one before
// its lastState and `logs --previous`. Keeping only the newest dead one
// would lose both in the moment a restarted container has exited again
// and not yet been restarted (a status then shows restartCount N with no
// last termination).
func Prune(ctx context.Context, rt Remover, rp *runtime.Pod) (removed int, err error) {
	seen := map[string]int{}
	keepSandbox := map[string]bool{}
	if len(rp.Sandboxes) > 0 {
		keepSandbox[rp.Sandboxes[0].Id] = true
	}
	for _, c := range rp.Containers { // newest first
		n := seen[c.Name]
		seen[c.Name]++
		if c.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || n < 2 {
			keepSandbox[c.SandboxID] = true
			continue
		}
		removed++
		err = errors.Join(err, rt.RemoveContainer(ctx, c.Status.Id))
	}
	for _, s := range rp.Sandboxes {
		if s.State != runtimeapi.PodSandboxState_SANDBOX_READY && !keepSandbox[s.Id] {
			removed++
			err = errors.Join(err, rt.RemovePodSandbox(ctx, s.Id))
		}
	}
	return removed, err
}
