package kubelet

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/nodesuite/nodesuite/kubelet/internal/cm"
	"github.com/nodesuite/nodesuite/kubelet/internal/config"
	"github.com/nodesuite/nodesuite/kubelet/internal/nodestatus"
	"github.com/nodesuite/nodesuite/kubelet/internal/podworker"
	"github.com/nodesuite/nodesuite/kubelet/internal/runtime"
)

// podCgroups gives the pod workers the QoS and pod cgroups upstream's
// container manager keeps (cm.Manager), and sweeps them every minute as its
// housekeeping does: the burstable tier's shares follow the Pods, and the
// cgroups of Pods that are gone are removed.
type podCgroups struct {
	m       *cm.Manager
	log     *zap.Logger
	active  func() []*v1.Pod // the admitted Pods; set before run
	started atomic.Bool
}

// newPodCgroups is nil with the systemd driver: its slices belong to systemd,
// which this kubelet does not drive; the runtime then creates them as named.
func newPodCgroups(cfg *config.Config, machine nodestatus.Machine, log *zap.Logger) (*podCgroups, error) {
	if cfg.CgroupDriver == "systemd" {
		log.Warn("QoS and pod cgroups are kept only with the cgroupfs driver; with systemd the runtime creates them with default weights")
		return nil, nil
	}
	capacity := v1.ResourceList{
		v1.ResourceCPU:    *resource.NewQuantity(machine.CPUs, resource.DecimalSI),
		v1.ResourceMemory: *resource.NewQuantity(machine.MemoryBytes, resource.BinarySI),
	}
	if pids, err := cm.MaxPIDs(); err == nil {
		capacity[cm.ResourcePID] = *resource.NewQuantity(pids, resource.DecimalSI)
	}
	system, err := reserved(cfg.SystemReserved)
	if err != nil {
		return nil, fmt.Errorf("systemReserved: %w", err)
	}
	kube, err := reserved(cfg.KubeReserved)
	if err != nil {
		return nil, fmt.Errorf("kubeReserved: %w", err)
	}
	m, err := cm.New(cm.Config{CgroupRoot: cfg.CgroupRoot, Capacity: capacity, SystemReserved: system, KubeReserved: kube,
		EnforceNodeAllocatable: []string{cm.EnforcePods}, PodPidsLimit: cfg.PodPidsLimit})
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	pc := &podCgroups{m: m, log: log}
	// Upstream refuses to start without its cgroupRoot; other failures are
	// retried by the sweep.
	if err := pc.start(); errors.Is(err, cm.ErrCgroupRootMissing) {
		return nil, fmt.Errorf("cgroups: %w", err)
	} else if err != nil {
		log.Warn("QoS cgroups", zap.Error(err))
	}
	return pc, nil
}

func reserved(m map[string]string) (v1.ResourceList, error) {
	out := v1.ResourceList{}
	for k, v := range m {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[v1.ResourceName(k)] = q
	}
	return out, nil
}

// start creates the QoS cgroups unless that already succeeded; a failure is
// tried again by the next caller.
func (p *podCgroups) start() error {
	if p.started.Load() {
		return nil
	}
	if err := p.m.Start(p.activePods()); err != nil {
		return err
	}
	p.started.Store(true)
	return nil
}

// EnsurePod makes the Pod's cgroup; a Burstable Pod first raises its tier's
// shares by its requests, as upstream updates the QoS cgroups before it.
func (p *podCgroups) EnsurePod(pod *v1.Pod) error {
	if err := p.start(); err != nil {
		return err
	}
	if cm.QOSClass(pod) == v1.PodQOSBurstable {
		active := p.activePods()
		found := false
		for _, a := range active {
			found = found || a.UID == pod.UID
		}
		if !found {
			active = append(active, pod)
		}
		if err := p.m.UpdateQOS(active); err != nil {
			return err
		}
	}
	return p.m.EnsurePod(pod)
}

func (p *podCgroups) RemovePod(uid types.UID) error { return p.m.RemovePod(uid) }

func (p *podCgroups) activePods() []*v1.Pod {
	if p.active == nil {
		return nil
	}
	return p.active()
}

// run sweeps every minute until ctx ends.
func (p *podCgroups) run(ctx context.Context, rt *runtime.Runtime, workers *podworker.Workers) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		p.sweep(ctx, rt, workers)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep updates the QoS tiers and removes the cgroups of Pods neither a
// source nor the runtime knows. A cgroup that still holds processes stays
// for the next sweep.
func (p *podCgroups) sweep(ctx context.Context, rt *runtime.Runtime, workers *podworker.Workers) {
	if err := p.start(); err != nil {
		p.log.Warn("QoS cgroups", zap.Error(err))
		return
	}
	if err := p.m.UpdateQOS(p.activePods()); err != nil {
		p.log.Warn("QoS cgroups", zap.Error(err))
	}
	inRuntime, err := rt.ListPods(ctx)
	if err != nil {
		p.log.Warn("pod cgroup sweep: list the runtime's Pods", zap.Error(err))
		return
	}
	orphans, err := p.m.Orphans(sets.KeySet(inRuntime))
	if err != nil {
		p.log.Warn("pod cgroup sweep", zap.Error(err))
		return
	}
	for _, uid := range orphans {
		if workers.Known(uid) {
			continue // admitted, its sandbox not made yet
		}
		if err := p.m.RemovePod(uid); err != nil {
			p.log.Info("pod cgroup not removed yet", zap.String("uid", string(uid)), zap.Error(err))
		}
	}
}
