// Package runtime wraps a CRI runtime: it connects to it, names CRI objects
// with the upstream kubelet's labels, and groups what it reports by Pod.
package runtime

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/trace/noop"
	"k8s.io/apimachinery/pkg/types"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
)

// Runtime is the CRI runtime and image service.
type Runtime struct {
	internalapi.RuntimeService
	internalapi.ImageManagerService
}

// Connect dials the CRI endpoints with the upstream CRI client.
func Connect(ctx context.Context, runtimeEndpoint, imageEndpoint string, timeout time.Duration) (*Runtime, error) {
	tp := noop.NewTracerProvider()
	rs, err := remote.NewRemoteRuntimeService(ctx, runtimeEndpoint, timeout, tp, false)
	if err != nil {
		return nil, fmt.Errorf("connect CRI runtime %s: %w", runtimeEndpoint, err)
	}
	is, err := remote.NewRemoteImageService(ctx, imageEndpoint, timeout, tp, false)
	if err != nil {
		return nil, fmt.Errorf("connect CRI image service %s: %w", imageEndpoint, err)
	}
	return &Runtime{RuntimeService: countedRuntime{rs}, ImageManagerService: countedImages{is}}, nil
}

// Container is one container as the runtime reports it, with its labels decoded.
type Container struct {
	Status       *runtimeapi.ContainerStatus
	SandboxID    string
	Name         string
	Hash         uint64
	RestartCount int
}

// Pod is everything the runtime holds for one Pod UID.
type Pod struct {
	UID       types.UID
	Name      string
	Namespace string
	// Sandboxes newest first.
	Sandboxes []*runtimeapi.PodSandboxStatus
	// Containers newest first.
	Containers []*Container
	// ReadAt is when the listing that produced this view began: every
	// change the runtime made before it is in the view. Zero when unknown.
	ReadAt time.Time
}

// ActiveSandbox is the newest ready sandbox, or nil.
func (p *Pod) ActiveSandbox() *runtimeapi.PodSandboxStatus {
	if p == nil || len(p.Sandboxes) == 0 || p.Sandboxes[0].State != runtimeapi.PodSandboxState_SANDBOX_READY {
		return nil
	}
	return p.Sandboxes[0]
}

// WithSandbox is a copy of the Pod with sb, just created, as its newest
// sandbox; ReadAt stays that of the rest, read before.
func (p *Pod) WithSandbox(sb *runtimeapi.PodSandboxStatus) *Pod {
	c := *p
	c.Sandboxes = append([]*runtimeapi.PodSandboxStatus{sb}, p.Sandboxes...)
	return &c
}

// Latest is the newest container named name, or nil.
func (p *Pod) Latest(name string) *Container {
	if p == nil {
		return nil
	}
	for _, c := range p.Containers {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Running tells whether any container or sandbox of the Pod still runs.
func (p *Pod) Running() bool {
	if p == nil {
		return false
	}
	for _, s := range p.Sandboxes {
		if s.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			return true
		}
	}
	for _, c := range p.Containers {
		if c.Status.State == runtimeapi.ContainerState_CONTAINER_RUNNING || c.Status.State == runtimeapi.ContainerState_CONTAINER_CREATED {
			return true
		}
	}
	return false
}

// ListPods reads every sandbox and container the upstream kubelet or ours
// made (those with a Pod UID label) and groups them by Pod UID.
func (r *Runtime) ListPods(ctx context.Context) (map[types.UID]*Pod, error) {
	return r.list(ctx, nil, time.Now())
}

// GetPod is ListPods for one Pod UID; it returns an empty Pod when the
// runtime holds nothing for it.
func (r *Runtime) GetPod(ctx context.Context, uid types.UID) (*Pod, error) {
	start := time.Now()
	pods, err := r.list(ctx, map[string]string{PodUIDLabel: string(uid)}, start)
	if err != nil {
		return nil, err
	}
	if p := pods[uid]; p != nil {
		return p, nil
	}
	return &Pod{UID: uid, ReadAt: start}, nil
}

// list lists the runtime's objects; start, taken before, is each Pod's ReadAt.
func (r *Runtime) list(ctx context.Context, selector map[string]string, start time.Time) (map[types.UID]*Pod, error) {
	var sf *runtimeapi.PodSandboxFilter
	var cf *runtimeapi.ContainerFilter
	if selector != nil {
		sf = &runtimeapi.PodSandboxFilter{LabelSelector: selector}
		cf = &runtimeapi.ContainerFilter{LabelSelector: selector}
	}
	sbs, err := r.ListPodSandbox(ctx, sf)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	cs, err := r.ListContainers(ctx, cf)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	pods := map[types.UID]*Pod{}
	get := func(l map[string]string) *Pod {
		uid := types.UID(l[PodUIDLabel])
		if uid == "" {
			return nil
		}
		p := pods[uid]
		if p == nil {
			p = &Pod{UID: uid, Name: l[PodNameLabel], Namespace: l[PodNamespaceLabel], ReadAt: start}
			pods[uid] = p
		}
		return p
	}
	for _, s := range sbs {
		p := get(s.Labels)
		if p == nil {
			continue
		}
		st, err := r.PodSandboxStatus(ctx, s.Id, false)
		if err != nil || st.Status == nil {
			continue // removed meanwhile
		}
		p.Sandboxes = append(p.Sandboxes, st.Status)
	}
	for _, c := range cs {
		p := get(c.Labels)
		if p == nil {
			continue
		}
		st, err := r.ContainerStatus(ctx, c.Id, false)
		if err != nil || st.Status == nil {
			continue
		}
		if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED && st.Status.Message == "" {
			st.Status.Message = TerminationMessage(st.Status)
		}
		hash, _ := strconv.ParseUint(c.Annotations[HashAnn], 16, 64)
		rc, _ := strconv.Atoi(c.Annotations[RestartCountAnn])
		p.Containers = append(p.Containers, &Container{Status: st.Status, SandboxID: c.PodSandboxId,
			Name: c.Labels[ContainerNameLabel], Hash: hash, RestartCount: rc})
	}
	for _, p := range pods {
		sort.SliceStable(p.Sandboxes, func(i, j int) bool { return p.Sandboxes[i].CreatedAt > p.Sandboxes[j].CreatedAt })
		sort.SliceStable(p.Containers, func(i, j int) bool {
			return p.Containers[i].Status.CreatedAt > p.Containers[j].Status.CreatedAt
		})
	}
	return pods, nil
}
