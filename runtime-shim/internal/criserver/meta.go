package criserver

import (
	"context"
	"maps"

	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// objMeta is what the shim keeps in memory of a sandbox or container, as
// containerd's own CRI does, so that list and status calls need not read
// containerd's records (each carries the whole OCI spec). Every label
// write goes through this shim, which updates the copy after containerd
// accepted it. labels is replaced, never changed in place, so a reader may
// keep the map it got. A nil *objMeta in the index means "not known here":
// readers then go to containerd as before.
type objMeta struct {
	labels map[string]string
	ctr    *runtime.ContainerConfig  // containers
	sb     *runtime.PodSandboxConfig // sandboxes
}

// captureMeta is the last NewContainerOpts of a create: the record is then
// final, and keeping it costs no further read.
func captureMeta(into *containers.Container) containerd.NewContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		*into = containers.Container{ID: c.ID, Labels: maps.Clone(c.Labels), Extensions: c.Extensions}
		return nil
	}
}

func sandboxMeta(c containers.Container) *objMeta {
	cfg := &runtime.PodSandboxConfig{}
	if err := decodeExt(c, extSandboxCfg, cfg); err != nil {
		return nil
	}
	return &objMeta{labels: maps.Clone(c.Labels), sb: cfg}
}

func containerMeta(c containers.Container) *objMeta {
	cfg := &runtime.ContainerConfig{}
	if err := decodeExt(c, extContainerCfg, cfg); err != nil {
		return nil
	}
	return &objMeta{labels: maps.Clone(c.Labels), ctr: cfg}
}

// rememberSandbox and rememberContainer index a record read from or just
// written to containerd.
func (s *Service) rememberSandbox(c containers.Container) {
	m := sandboxMeta(c)
	s.mu.Lock()
	s.sbs[c.ID] = m
	s.mu.Unlock()
}

func (s *Service) rememberContainer(c containers.Container) {
	m := containerMeta(c)
	s.mu.Lock()
	s.ctrs[c.ID] = m
	s.mu.Unlock()
}

// noteLabels merges labels containerd accepted into the kept copy.
func (s *Service) noteLabels(id string, kv map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, idx := range []map[string]*objMeta{s.ctrs, s.sbs} {
		if m := idx[id]; m != nil {
			l := maps.Clone(m.labels)
			if l == nil {
				l = map[string]string{}
			}
			maps.Copy(l, kv)
			idx[id] = &objMeta{labels: l, ctr: m.ctr, sb: m.sb}
		}
	}
}

// liveOf is one task as the monitors know it (see liveSnapshot).
func (s *Service) liveOf(id string) (*tasktypes.Process, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[id]
	if l == nil {
		return nil, false
	}
	return l.process(id), true
}

func (s *Service) metaOf(idx map[string]*objMeta, id string) *objMeta {
	s.mu.Lock()
	defer s.mu.Unlock()
	return idx[id]
}

// metas copies an index; ok is false when some entry is not known here.
func (s *Service) metas(idx map[string]*objMeta) (map[string]*objMeta, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*objMeta, len(idx))
	for id, m := range idx {
		if m == nil {
			return nil, false
		}
		out[id] = m
	}
	return out, true
}

// containerTask is the task to judge a kept container by, read after the
// live view and before the labels (see taskThenLabels): the monitors' view
// when they watch it; none when the labels say it never started or its
// exit is recorded; else containerd's.
func (s *Service) containerTask(ctx context.Context, id string, live *tasktypes.Process, known bool, labels map[string]string) (*tasktypes.Process, error) {
	switch {
	case known:
		return live, nil
	case labels[labelFinished] != "", labels[labelStarted] == "":
		return nil, nil
	}
	return s.taskState(ctx, id)
}

// noteConfig replaces a kept container's CRI config after containerd stored it.
func (s *Service) noteConfig(id string, cfg *runtime.ContainerConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.ctrs[id]; m != nil {
		s.ctrs[id] = &objMeta{labels: m.labels, ctr: cfg}
	}
}
