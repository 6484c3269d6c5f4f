package criserver

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// sandboxRec is a sandbox as read from containerd.
type sandboxRec struct {
	ID      string
	Config  *runtime.PodSandboxConfig
	Labels  map[string]string
	Created int64
	State   runtime.PodSandboxState
	PID     uint32
	NetNS   string
	IPs     []string
}

// containerRec is a container as read from containerd.
type containerRec struct {
	ID, SandboxID string
	Config        *runtime.ContainerConfig
	Labels        map[string]string
	Image         string // image name
	ImageRef      string // image id
	State         runtime.ContainerState
	PID           uint32
	Created       int64
	Started       int64
	Finished      int64
	ExitCode      int32
	Reason        string
	LogPath       string
}

func kindFilter(kind string) string { return fmt.Sprintf(`labels.%q==%s`, labelKind, kind) }

// tasks returns all task states in the namespace in one call.
func (s *Service) tasks(ctx context.Context) (map[string]*tasktypes.Process, error) {
	resp, err := s.client.TaskService().List(s.ctx(ctx), &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, err
	}
	m := make(map[string]*tasktypes.Process, len(resp.Tasks))
	for _, t := range resp.Tasks {
		m[t.ID] = t
	}
	return m, nil
}

func decodeExt(c containers.Container, name string, into proto.Message) error {
	ext, ok := c.Extensions[name]
	if !ok {
		return fmt.Errorf("container %s lacks extension %s", c.ID, name)
	}
	return proto.Unmarshal(ext.GetValue(), into)
}

func sandboxFrom(c containers.Container, t *tasktypes.Process) (*sandboxRec, error) {
	cfg := &runtime.PodSandboxConfig{}
	if err := decodeExt(c, extSandboxCfg, cfg); err != nil {
		return nil, err
	}
	return sandboxRecOf(c.ID, c.Labels, cfg, t), nil
}

func sandboxRecOf(id string, labels map[string]string, cfg *runtime.PodSandboxConfig, t *tasktypes.Process) *sandboxRec {
	r := &sandboxRec{ID: id, Config: cfg, Labels: labels, Created: parseNanos(labels[labelCreated]),
		NetNS: labels[labelNetNS], State: runtime.PodSandboxState_SANDBOX_NOTREADY}
	if ips := labels[labelIPs]; ips != "" {
		r.IPs = strings.Split(ips, ",")
	}
	if t != nil && t.Status == tasktypes.Status_RUNNING && labels[labelState] == "ready" {
		r.State = runtime.PodSandboxState_SANDBOX_READY
		r.PID = t.Pid
	}
	return r
}

func containerFrom(c containers.Container, t *tasktypes.Process) (*containerRec, error) {
	cfg := &runtime.ContainerConfig{}
	if err := decodeExt(c, extContainerCfg, cfg); err != nil {
		return nil, err
	}
	return containerRecOf(c.ID, c.Labels, cfg, t), nil
}

func containerRecOf(id string, l map[string]string, cfg *runtime.ContainerConfig, t *tasktypes.Process) *containerRec {
	r := &containerRec{ID: id, SandboxID: l[labelSandboxID], Config: cfg, Labels: l,
		Image: l[labelImageName], ImageRef: l[labelImageRef], LogPath: l[labelLogPath],
		Created: parseNanos(l[labelCreated]), Started: parseNanos(l[labelStarted]), Finished: parseNanos(l[labelFinished]),
		Reason: l[labelReason], State: runtime.ContainerState_CONTAINER_CREATED}
	if v, err := strconv.ParseInt(l[labelExitCode], 10, 32); err == nil {
		r.ExitCode = int32(v)
	}
	// The labels and the task come from two reads, the task read first
	// (see taskThenLabels): a recorded exit is final and wins; otherwise
	// the task, which was current when read, tells.
	switch {
	case r.Finished != 0:
		r.State = runtime.ContainerState_CONTAINER_EXITED
	case t != nil && (t.Status == tasktypes.Status_RUNNING || t.Status == tasktypes.Status_PAUSED || t.Status == tasktypes.Status_PAUSING):
		r.State, r.PID = runtime.ContainerState_CONTAINER_RUNNING, t.Pid
	case t != nil && t.Status == tasktypes.Status_STOPPED:
		// Exited but not yet recorded by the monitor: report from the task.
		r.State = runtime.ContainerState_CONTAINER_EXITED
		r.ExitCode = int32(t.ExitStatus)
		if t.ExitedAt != nil {
			r.Finished = t.ExitedAt.AsTime().UnixNano()
		}
	case r.Started != 0:
		// Started, no task and no recorded exit: the task died unrecorded
		// (e.g. while this shim was down, before Recover).
		r.State = runtime.ContainerState_CONTAINER_EXITED
	}
	if r.State == runtime.ContainerState_CONTAINER_EXITED && r.Reason == "" {
		if r.ExitCode == 0 {
			r.Reason = "Completed"
		} else {
			r.Reason = "Error"
		}
	}
	return r
}

func (s *Service) listSandboxes(ctx context.Context) ([]*sandboxRec, error) {
	ts := s.liveSnapshot() // before the labels, as for containers (taskThenLabels)
	if ms, ok := s.metas(s.sbs); ok {
		out := make([]*sandboxRec, 0, len(ms))
		for id, m := range ms {
			t, known := ts[id]
			if !known && m.labels[labelState] == "ready" {
				t = s.taskOf(ctx, id) // ready but not watched: ask containerd
			}
			out = append(out, sandboxRecOf(id, m.labels, m.sb, t))
		}
		return out, nil
	}
	cs, err := s.client.ContainerService().List(s.ctx(ctx), kindFilter(kindSandbox))
	if err != nil {
		return nil, err
	}
	out := make([]*sandboxRec, 0, len(cs))
	for _, c := range cs {
		t, known := ts[c.ID]
		if !known && c.Labels[labelState] == "ready" {
			t = s.taskOf(ctx, c.ID) // ready but not watched: ask containerd
		}
		r, err := sandboxFrom(c, t)
		if err != nil {
			s.log.Warn("skipping unreadable sandbox")
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// taskThenLabels: every reader of a container's state reads its task
// before its labels. The monitor records an exit in the labels before it
// deletes the task, so labels read after the task either hold the exit or
// the task was still there when read. Read the other way round, a container
// could start and exit between the two reads and look never started
// (CREATED), which made the kubelet keep a deleted container as the Pod's
// last terminated one.

// startedUnseen: the labels say started but the task, read before them,
// was not there yet: the task must be read again.
func startedUnseen(c containers.Container, t *tasktypes.Process) bool {
	return t == nil && c.Labels[labelStarted] != "" && c.Labels[labelFinished] == ""
}

func (s *Service) listContainers(ctx context.Context) ([]*containerRec, error) {
	ts := s.liveSnapshot() // before the labels: see taskThenLabels
	if ms, ok := s.metas(s.ctrs); ok {
		out := make([]*containerRec, 0, len(ms))
		for id, m := range ms {
			live, known := ts[id]
			t, err := s.containerTask(ctx, id, live, known, m.labels)
			if err != nil {
				t = nil // as taskOf: judged by the labels alone
			}
			out = append(out, containerRecOf(id, m.labels, m.ctr, t))
		}
		return out, nil
	}
	cs, err := s.client.ContainerService().List(s.ctx(ctx), kindFilter(kindContainer))
	if err != nil {
		return nil, err
	}
	out := make([]*containerRec, 0, len(cs))
	for _, c := range cs {
		t := ts[c.ID]
		if startedUnseen(c, t) {
			t = s.taskOf(ctx, c.ID) // not watched by us (yet): ask containerd
		}
		r, err := containerFrom(c, t)
		if err != nil {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// resolveID accepts a full ID or a unique prefix, as crictl passes prefixes.
func resolveID(ids []string, want, what string) (string, error) {
	var match []string
	for _, id := range ids {
		if id == want {
			return id, nil
		}
		if strings.HasPrefix(id, want) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return "", status.Errorf(codes.NotFound, "%s %q not found", what, want)
	case 1:
		return match[0], nil
	}
	return "", status.Errorf(codes.InvalidArgument, "%s ID prefix %q is ambiguous", what, want)
}

// getSandbox resolves id (full or unique prefix) through the in-memory
// index and reads only that sandbox and its task, as getContainer does.
func (s *Service) getSandbox(ctx context.Context, id string) (*sandboxRec, error) {
	full, err := resolveID(s.sandboxIDs(), id, "sandbox")
	if err != nil {
		return nil, err
	}
	live, known := s.liveOf(full) // before the labels: see taskThenLabels
	if m := s.metaOf(s.sbs, full); m != nil {
		if !known && m.labels[labelState] == "ready" {
			live = s.taskOf(ctx, full) // nil when its shim is unreachable: not ready
		}
		return sandboxRecOf(full, m.labels, m.sb, live), nil
	}
	t, taskErr := s.taskState(ctx, full) // the task first: see taskThenLabels
	c, err := s.client.ContainerService().Get(s.ctx(ctx), full)
	if errdefs.IsNotFound(err) {
		s.unindexSandbox(full)
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", id)
	} else if err != nil {
		return nil, toStatus(err, "load sandbox")
	}
	if c.Labels[labelKind] != kindSandbox {
		return nil, status.Errorf(codes.NotFound, "sandbox %q not found", id)
	}
	if taskErr != nil {
		// The pause task's shim is unreachable (e.g. going away): the
		// sandbox is not ready, the rest of the record stands.
		t = nil
	}
	rec, err := sandboxFrom(c, t)
	if err != nil {
		return nil, status.Errorf(codes.NotFound, "sandbox %q unreadable: %v", id, err)
	}
	return rec, nil
}

// listContainersOf lists one sandbox's containers: containerd filters by
// label and only their tasks are read, so the cost does not grow with the
// rest of the node.
func (s *Service) listContainersOf(ctx context.Context, sandboxID string) ([]*containerRec, error) {
	var ids []string
	if ms, ok := s.metas(s.ctrs); ok {
		for id, m := range ms {
			if m.labels[labelSandboxID] == sandboxID {
				ids = append(ids, id)
			}
		}
	} else {
		cs, err := s.client.ContainerService().List(s.ctx(ctx),
			kindFilter(kindContainer)+","+fmt.Sprintf(`labels.%q==%s`, labelSandboxID, sandboxID))
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
	}
	out := make([]*containerRec, 0, len(ids))
	for _, id := range ids {
		rec, err := s.loadContainer(ctx, id)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		} else if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// indexSandbox indexes a sandbox not kept in memory (see objMeta).
func (s *Service) indexSandbox(id string)   { s.setIndexed(s.sbs, id) }
func (s *Service) unindexSandbox(id string) { s.dropIndexed(s.sbs, id) }
func (s *Service) sandboxIDs() []string     { return s.indexedIDs(s.sbs) }

// indexContainer indexes a container not kept in memory (see objMeta).
func (s *Service) indexContainer(id string) { s.setIndexed(s.ctrs, id) }
func (s *Service) unindexContainer(id string) {
	s.dropIndexed(s.ctrs, id)
	s.mu.Lock()
	delete(s.procs, id)
	delete(s.taskIns, id)
	s.mu.Unlock()
}
func (s *Service) containerIDs() []string { return s.indexedIDs(s.ctrs) }

// setIndexed, dropIndexed and indexedIDs work on either index under s.mu.
func (s *Service) setIndexed(m map[string]*objMeta, id string) {
	s.mu.Lock()
	m[id] = nil
	s.mu.Unlock()
}

func (s *Service) dropIndexed(m map[string]*objMeta, id string) {
	s.mu.Lock()
	delete(m, id)
	s.mu.Unlock()
}

func (s *Service) indexedIDs(m map[string]*objMeta) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	return ids
}

// getContainer resolves id (full or unique prefix) through the in-memory
// index and reads only that container and its task from containerd, so its
// cost and its failure modes do not depend on the other containers.
func (s *Service) getContainer(ctx context.Context, id string) (*containerRec, error) {
	full, err := resolveID(s.containerIDs(), id, "container")
	if err != nil {
		return nil, err
	}
	rec, err := s.loadContainer(ctx, full)
	if errdefs.IsNotFound(err) {
		s.unindexContainer(full)
		return nil, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	return rec, err
}

// loadContainer reads one container and its task state.
func (s *Service) loadContainer(ctx context.Context, id string) (*containerRec, error) {
	live, known := s.liveOf(id) // before the labels: see taskThenLabels
	if m := s.metaOf(s.ctrs, id); m != nil {
		t, err := s.containerTask(ctx, id, live, known, m.labels)
		if err != nil {
			return nil, toStatus(err, "task state")
		}
		if t == nil && startedUnseen(containers.Container{Labels: m.labels}, nil) {
			// started, no exit recorded, no task: read again as below
			if t, err = s.taskState(ctx, id); err != nil {
				return nil, toStatus(err, "task state")
			}
		}
		return containerRecOf(id, m.labels, m.ctr, t), nil
	}
	// The task before the labels: see taskThenLabels.
	t, taskErr := s.taskState(ctx, id)
	c, err := s.client.ContainerService().Get(s.ctx(ctx), id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, err
		}
		return nil, toStatus(err, "load container")
	}
	if c.Labels[labelKind] != kindContainer {
		return nil, fmt.Errorf("%s is not a CRI container: %w", id, errdefs.ErrNotFound)
	}
	if taskErr == nil && startedUnseen(c, t) {
		t, taskErr = s.taskState(ctx, id)
	}
	switch {
	case taskErr == nil:
	case c.Labels[labelFinished] != "":
		// The exit is recorded; the task is going away (its shim may
		// already be unreachable), so it adds nothing.
		t = nil
	default:
		return nil, toStatus(taskErr, "task state")
	}
	rec, err := containerFrom(c, t)
	if err != nil {
		return nil, fmt.Errorf("unreadable container %s (%v): %w", id, err, errdefs.ErrNotFound)
	}
	return rec, nil
}

// taskState reads one task; nil without error when there is none
// (created, or exited and deleted: the labels tell which).
func (s *Service) taskState(ctx context.Context, id string) (*tasktypes.Process, error) {
	resp, err := s.client.TaskService().Get(s.ctx(ctx), &tasksapi.GetRequest{ContainerID: id})
	switch {
	case err == nil:
		return resp.GetProcess(), nil
	case status.Code(err) == codes.NotFound:
		return nil, nil
	}
	return nil, err
}

// setLabels merges labels into a containerd container's labels.
func (s *Service) setLabels(ctx context.Context, id string, kv map[string]string) error {
	// One update of just these labels, as the client's SetLabels does, without loading the record first.
	paths := make([]string, 0, len(kv))
	for k := range kv {
		paths = append(paths, "labels."+k)
	}
	if _, err := s.client.ContainerService().Update(s.ctx(ctx), containers.Container{ID: id, Labels: kv}, paths...); err != nil {
		return err
	}
	s.noteLabels(id, kv)
	return nil
}
