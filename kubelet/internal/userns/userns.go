// Package userns gives Pods with spec.hostUsers: false a user namespace of
// their own, as the upstream kubelet's user namespace manager
// (pkg/kubelet/userns) does: each such Pod gets one range of IDs from the
// kubelet's range, kept in <root-dir>/pods/<uid>/userns in upstream's format,
// so a node can switch between the upstream kubelet and ours and a Pod keeps
// its IDs.
package userns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// unitLength is the granularity of every ID range (upstream's userNsUnitLength).
	unitLength = 65536
	// DefaultIDsPerPod is upstream's default userNamespaces.idsPerPod.
	DefaultIDsPerPod = 65536
	// mappingsFile, in the Pod's directory, holds its mappings.
	mappingsFile = "userns"
)

// Runtime tells whether a CRI runtime handler ("" is the default one) can
// run Pods in user namespaces (Handlers is the kubelet's).
type Runtime interface {
	SupportsUserNamespaces(ctx context.Context, handler string) (bool, error)
}

// Config is what New needs.
type Config struct {
	PodsDir string // <root-dir>/pods
	// IDsPerPod is userNamespaces.idsPerPod; 0 is DefaultIDsPerPod.
	IDsPerPod uint32
	MaxPods   int
	Runtime   Runtime
	// host reaches the host's users and commands; the zero value is the
	// real host, tests replace it.
	host host
}

// Manager allocates and records the Pods' ID ranges. Its methods are safe
// for concurrent use.
type Manager struct {
	podsDir   string
	idsPerPod uint32
	runtime   Runtime
	// off is the first slot, the kubelet's first ID / idsPerPod: slot off+i
	// holds IDs [(off+i)*idsPerPod, (off+i+1)*idsPerPod).
	off int

	mu     sync.Mutex
	used   []bool               // by slot - off
	usedBy map[types.UID]uint32 // first host ID by Pod
}

// userNamespace and idMapping are upstream's file format, field for field.
type userNamespace struct {
	UIDMappings []idMapping `json:"uidMappings"`
	GIDMappings []idMapping `json:"gidMappings"`
}

type idMapping struct {
	HostID      uint32 `json:"hostId"`
	ContainerID uint32 `json:"containerId"`
	Length      uint32 `json:"length"`
}

// New reads the kubelet's ID range, checks it as upstream's
// MakeUserNsManager does, and records the ranges of the Pods already on
// disk; a mappings file it cannot accept fails the start, as upstream.
func New(cfg Config) (*Manager, error) {
	ids := cfg.IDsPerPod
	if ids == 0 {
		ids = DefaultIDsPerPod
	}
	first, length, err := kubeletMappings(cfg.host.orOS(), ids)
	if err != nil {
		return nil, fmt.Errorf("kubelet mappings: %w", err)
	}
	// Upstream's checks and texts, in its order.
	if ids%unitLength != 0 {
		return nil, fmt.Errorf("kubelet user namespace length %v is not a multiple of %d", ids, unitLength)
	}
	if first%ids != 0 {
		return nil, fmt.Errorf("kubelet user assigned ID %v is not a multiple of %v", first, ids)
	}
	if first < ids {
		// Mapping ID 0 would give a Pod's root the host's root.
		return nil, fmt.Errorf("kubelet user assigned ID %v must be greater or equal to %v", first, ids)
	}
	if length%ids != 0 {
		return nil, fmt.Errorf("kubelet user assigned IDs length %v is not a multiple of %v", length, ids)
	}
	if length/ids < uint32(cfg.MaxPods) {
		return nil, fmt.Errorf("kubelet user assigned IDs are not enough to support %v pods", cfg.MaxPods)
	}
	m := &Manager{podsDir: cfg.PodsDir, idsPerPod: ids, runtime: cfg.Runtime, off: int(first / ids),
		used: make([]bool, length/ids), usedBy: map[types.UID]uint32{}}
	found, err := m.podsOnDisk()
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pods from disk: %w", err)
	}
	for _, uid := range found {
		if err := m.recordFromDisk(uid); err != nil {
			return nil, fmt.Errorf("record pod mappings for existing pod %q: %w", uid, err)
		}
	}
	return m, nil
}

// Range is the kubelet's IDs: the first, how many Pods they serve, and the IDs each gets.
func (m *Manager) Range() (first uint32, pods int, idsPerPod uint32) {
	return uint32(m.off) * m.idsPerPod, len(m.used), m.idsPerPod
}

// podsOnDisk lists the Pod directories, as upstream's listPodsFromDisk.
func (m *Manager) podsOnDisk() ([]types.UID, error) {
	ents, err := os.ReadDir(m.podsDir)
	if err != nil {
		return nil, err
	}
	var out []types.UID
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, types.UID(e.Name()))
		}
	}
	return out, nil
}

func (m *Manager) podDir(uid types.UID) string { return filepath.Join(m.podsDir, string(uid)) }

// readFile is the Pod's mappings file; none (or empty) is no content.
func (m *Manager) readFile(uid types.UID) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(m.podDir(uid), mappingsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func (m *Manager) recordFromDisk(uid types.UID) error {
	content, err := m.readFile(uid)
	if err != nil || len(content) == 0 {
		return err // a Pod without the file runs in the host's user namespace
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err = m.parseAndRecord(uid, content)
	return err
}

// parseAndRecord is upstream's parseUserNsFileAndRecord: it accepts only
// what a kubelet writes, and takes the range for the Pod.
func (m *Manager) parseAndRecord(uid types.UID, content []byte) (userNamespace, error) {
	var ns userNamespace
	if err := json.Unmarshal(content, &ns); err != nil {
		return ns, fmt.Errorf("invalid user namespace mappings file: %w", err)
	}
	switch {
	case len(ns.UIDMappings) != 1:
		return ns, errors.New("invalid user namespace configuration: no more than one mapping allowed.")
	case len(ns.UIDMappings) != len(ns.GIDMappings):
		return ns, errors.New("invalid user namespace configuration: GID and UID mappings should be identical.")
	case ns.UIDMappings[0] != ns.GIDMappings[0]:
		return ns, errors.New("invalid user namespace configuration: GID and UID mapping should be identical")
	case ns.UIDMappings[0].ContainerID != 0:
		// Runtimes assume root is mapped, and no kubelet writes otherwise.
		return ns, errors.New("invalid user namespace configuration: UID 0 must be mapped")
	case ns.GIDMappings[0].ContainerID != 0:
		return ns, errors.New("invalid user namespace configuration: GID 0 must be mapped")
	}
	return ns, m.record(uid, ns.UIDMappings[0].HostID, ns.UIDMappings[0].Length)
}

// record takes the range starting at from for the Pod, as upstream's record.
func (m *Manager) record(uid types.UID, from, length uint32) error {
	if length != m.idsPerPod {
		return fmt.Errorf("wrong user namespace length %v", length)
	}
	if from%m.idsPerPod != 0 {
		return fmt.Errorf("wrong user namespace offset specified %v", from)
	}
	prev, found := m.usedBy[uid]
	if found && prev != from {
		return fmt.Errorf("different user namespace range already used by pod %q", uid)
	}
	i := int(from/m.idsPerPod) - m.off
	if i < 0 || i >= len(m.used) {
		return fmt.Errorf("id %v is out of range", from)
	}
	if found {
		return nil
	}
	if m.used[i] {
		return fmt.Errorf("range picked for pod %q already taken", uid)
	}
	m.used[i] = true
	m.usedBy[uid] = from
	return nil
}

// allocate takes the first free range for the Pod.
func (m *Manager) allocate(uid types.UID) (uint32, error) {
	for i, u := range m.used {
		if !u {
			m.used[i] = true
			first := uint32(m.off+i) * m.idsPerPod
			m.usedBy[uid] = first
			return first, nil
		}
	}
	return 0, errors.New("could not find an empty slot to allocate a user namespace")
}

// create allocates a range for the Pod and persists it; on failure the
// range is free again.
func (m *Manager) create(uid types.UID) (userNamespace, error) {
	first, err := m.allocate(uid)
	if err != nil {
		return userNamespace{}, err
	}
	mp := idMapping{HostID: first, ContainerID: 0, Length: m.idsPerPod}
	ns := userNamespace{UIDMappings: []idMapping{mp}, GIDMappings: []idMapping{mp}}
	if err := m.write(uid, ns); err != nil {
		m.releaseLocked(uid)
		return userNamespace{}, err
	}
	return ns, nil
}

// write persists the mappings as upstream's file store does (a synced
// temporary file renamed over the old one), then syncs the directory: the
// file must survive a crash, or the IDs could go to a second Pod.
func (m *Manager) write(uid types.UID, ns userNamespace) (err error) {
	dir := m.podDir(uid)
	data, err := json.Marshal(ns)
	if err != nil {
		return err
	}
	// 0750 as the kubelet makes Pod directories; it usually exists already.
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create user namespace store: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), filepath.Join(dir, mappingsFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err = d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// GetOrCreate is the Pod's CRI user namespace, upstream's
// GetOrCreateUserNamespaceMappings: the node's for hostUsers unset or true
// (sent for every Pod, as upstream), else the Pod's own range under a
// runtime handler that supports it, read from its file or allocated and
// written on first use. Calling it again returns the same range.
func (m *Manager) GetOrCreate(ctx context.Context, pod *v1.Pod, runtimeHandler string) (*runtimeapi.UserNamespace, error) {
	if pod.Spec.HostUsers == nil || *pod.Spec.HostUsers {
		return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}, nil
	}
	if ok, err := m.runtime.SupportsUserNamespaces(ctx, runtimeHandler); err != nil || !ok {
		msg := "can't set `spec.hostUsers: false`, runtime does not support user namespaces"
		if runtimeHandler != "" {
			msg = fmt.Sprintf("can't set `spec.hostUsers: false`, RuntimeClass handler %q does not support user namespaces", runtimeHandler)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", msg, err)
		}
		return nil, errors.New(msg)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	content, err := m.readFile(pod.UID)
	if err != nil {
		return nil, err
	}
	var ns userNamespace
	if len(content) != 0 {
		if ns, err = m.parseAndRecord(pod.UID, content); err != nil {
			return nil, fmt.Errorf("user namespace: %w", err)
		}
	} else if ns, err = m.create(pod.UID); err != nil {
		return nil, fmt.Errorf("create user namespace: %w", err)
	}
	out := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}
	for _, u := range ns.UIDMappings {
		out.Uids = append(out.Uids, &runtimeapi.IDMapping{HostId: u.HostID, ContainerId: u.ContainerID, Length: u.Length})
	}
	for _, g := range ns.GIDMappings {
		out.Gids = append(out.Gids, &runtimeapi.IDMapping{HostId: g.HostID, ContainerId: g.ContainerID, Length: g.Length})
	}
	return out, nil
}

// Release frees the Pod's range and deletes its file; a Pod without one is
// left alone.
func (m *Manager) Release(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.releaseLocked(uid)
}

func (m *Manager) releaseLocked(uid types.UID) {
	from, ok := m.usedBy[uid]
	if !ok {
		return
	}
	delete(m.usedBy, uid)
	_ = os.Remove(filepath.Join(m.podDir(uid), mappingsFile))
	m.used[int(from/m.idsPerPod)-m.off] = false
}

// Cleanup is upstream's CleanupOrphanedPodUsernsAllocations: it releases the
// range of every Pod directory whose Pod is not known, and every range whose
// Pod has no directory. known is asked under the manager's lock, so a Pod
// whose range GetOrCreate took before must already answer true (it is in a
// source, or its objects are in the runtime).
func (m *Manager) Cleanup(known func(types.UID) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	found, err := m.podsOnDisk()
	if err != nil {
		return fmt.Errorf("user namespace: read pods from disk: %w", err)
	}
	onDisk := map[types.UID]bool{}
	for _, uid := range found {
		onDisk[uid] = true
		if !known(uid) {
			m.releaseLocked(uid)
		}
	}
	for uid := range m.usedBy {
		if !onDisk[uid] {
			m.releaseLocked(uid)
		}
	}
	return nil
}
