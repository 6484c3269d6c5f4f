// Package volume prepares a Pod's volumes on the host before its containers
// start and keeps them current: emptyDir (disk or tmpfs), hostPath,
// configMap, secret, downwardAPI and projected volumes (with
// ServiceAccount tokens from the TokenRequest API, refreshed before expiry).
package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nodesuite/nodesuite/kubelet/internal/containerconfig"
)

// Errors a volume's setup wraps; the sync turns them into FailedMount events.
var (
	ErrUnsupported = errors.New("volume type not supported by this kubelet")
	ErrSource      = errors.New("volume source unavailable")
)

// sourceError is an ErrSource worded as upstream words it, so the
// FailedMount Events of both kubelets read the same.
type sourceError struct {
	msg string
	err error
}

func (e sourceError) Error() string   { return e.msg }
func (e sourceError) Unwrap() []error { return []error{ErrSource, e.err} }

// Sources reads the API objects volumes project.
type Sources interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
	Token(ctx context.Context, namespace, serviceAccount string, req *authv1.TokenRequest) (*authv1.TokenRequest, error)
}

// Mounter is the host's mount table, behind an interface for unit tests.
type Mounter interface {
	// MountTmpfs mounts a tmpfs at path unless one is there; size 0 is unbounded.
	MountTmpfs(path string, size int64) error
	// UnmountUnder detaches every mount at or below dir.
	UnmountUnder(dir string) error
}

// Manager sets up volumes; one serves every Pod.
type Manager struct {
	RootDir string
	Src     Sources // nil when standalone: configMap, secret and token volumes then fail
	Mount   Mounter
	Env     containerconfig.PodEnv
	Now     func() time.Time

	mu     sync.Mutex
	tokens map[string]*authv1.TokenRequest
}

// Setup prepares every volume of the Pod and returns, by volume name, what
// containers mount. Errors name the volume, as upstream's FailedMount does.
func (m *Manager) Setup(ctx context.Context, pod *v1.Pod) (map[string]containerconfig.HostVolume, error) {
	out := map[string]containerconfig.HostVolume{}
	var errs []error
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		hv, err := m.setupOne(ctx, pod, vol)
		if err != nil {
			errs = append(errs, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", vol.Name, err))
			continue
		}
		out[vol.Name] = hv
	}
	return out, errors.Join(errs...)
}

// Dir is where the kubelet keeps a volume of the Pod, as upstream lays it out.
func Dir(rootDir string, uid types.UID, plugin, name string) string {
	return filepath.Join(rootDir, "pods", string(uid), "volumes", plugin, name)
}

func (m *Manager) setupOne(ctx context.Context, pod *v1.Pod, vol *v1.Volume) (containerconfig.HostVolume, error) {
	dir := func(plugin string) string { return Dir(m.RootDir, pod.UID, plugin, vol.Name) }
	switch {
	case vol.EmptyDir != nil:
		p := dir("kubernetes.io~empty-dir")
		if err := os.MkdirAll(p, 0o777); err != nil {
			return containerconfig.HostVolume{}, err
		}
		if vol.EmptyDir.Medium == v1.StorageMediumMemory {
			var size int64
			if vol.EmptyDir.SizeLimit != nil {
				size = vol.EmptyDir.SizeLimit.Value()
			}
			if err := m.Mount.MountTmpfs(p, size); err != nil {
				return containerconfig.HostVolume{}, err
			}
		}
		// Upstream leaves emptyDir world-writable so any container user can use it.
		if err := os.Chmod(p, 0o777); err != nil {
			return containerconfig.HostVolume{}, err
		}
		return containerconfig.HostVolume{Path: p}, nil
	case vol.HostPath != nil:
		t := v1.HostPathUnset
		if vol.HostPath.Type != nil {
			t = *vol.HostPath.Type
		}
		if err := checkHostPath(vol.HostPath.Path, t); err != nil {
			return containerconfig.HostVolume{}, err
		}
		return containerconfig.HostVolume{Path: vol.HostPath.Path}, nil
	case vol.ConfigMap != nil, vol.Secret != nil, vol.DownwardAPI != nil, vol.Projected != nil:
		payload, plugin, err := m.payload(ctx, pod, vol)
		if err != nil {
			return containerconfig.HostVolume{}, err
		}
		p := dir(plugin)
		if payload == nil { // an optional source that is absent: an empty directory
			payload = map[string]File{}
		}
		if vol.ConfigMap == nil {
			// Secrets, tokens and the downward API stay off the disk: on a
			// tmpfs, as upstream's memory-backed wrappers of these plugins.
			if err := os.MkdirAll(p, 0o755); err != nil {
				return containerconfig.HostVolume{}, err
			}
			if err := m.Mount.MountTmpfs(p, 0); err != nil {
				return containerconfig.HostVolume{}, err
			}
		}
		if _, err := writeAtomic(p, payload); err != nil {
			return containerconfig.HostVolume{}, err
		}
		return containerconfig.HostVolume{Path: p, ReadOnly: true}, nil
	}
	return containerconfig.HostVolume{}, ErrUnsupported
}

func checkHostPath(p string, t v1.HostPathType) error {
	fi, err := os.Stat(p)
	switch t {
	case v1.HostPathUnset:
		return nil
	case v1.HostPathDirectoryOrCreate:
		if os.IsNotExist(err) {
			return os.MkdirAll(p, 0o755)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", p)
		}
		return err
	case v1.HostPathFileOrCreate:
		if os.IsNotExist(err) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %s: %w", p, err)
	}
	ok := true
	switch t {
	case v1.HostPathDirectory:
		ok = fi.IsDir()
	case v1.HostPathFile:
		ok = fi.Mode().IsRegular()
	case v1.HostPathSocket:
		ok = fi.Mode()&os.ModeSocket != 0
	case v1.HostPathCharDev:
		ok = fi.Mode()&os.ModeCharDevice != 0
	case v1.HostPathBlockDev:
		ok = fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
	}
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", p, t)
	}
	return nil
}

func mode(m *int32, def int32) os.FileMode {
	if m != nil {
		return os.FileMode(*m)
	}
	return os.FileMode(def)
}

// payload computes the files of a configMap, secret, downwardAPI or
// projected volume; nil without error means an absent optional source.
func (m *Manager) payload(ctx context.Context, pod *v1.Pod, vol *v1.Volume) (map[string]File, string, error) {
	gid := -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}
	out := map[string]File{}
	switch {
	case vol.ConfigMap != nil:
		s := vol.ConfigMap
		err := m.configMap(ctx, pod, s.Name, s.Items, s.Optional, mode(s.DefaultMode, v1.ConfigMapVolumeSourceDefaultMode), gid, out)
		return out, "kubernetes.io~configmap", err
	case vol.Secret != nil:
		s := vol.Secret
		err := m.secret(ctx, pod, s.SecretName, s.Items, s.Optional, mode(s.DefaultMode, v1.SecretVolumeSourceDefaultMode), gid, out)
		return out, "kubernetes.io~secret", err
	case vol.DownwardAPI != nil:
		s := vol.DownwardAPI
		err := m.downward(pod, s.Items, mode(s.DefaultMode, v1.DownwardAPIVolumeSourceDefaultMode), gid, out)
		return out, "kubernetes.io~downward-api", err
	}
	s := vol.Projected
	def := mode(s.DefaultMode, v1.ProjectedVolumeSourceDefaultMode)
	var errs []error
	for _, src := range s.Sources {
		var err error
		switch {
		case src.ConfigMap != nil:
			err = m.configMap(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, def, gid, out)
		case src.Secret != nil:
			err = m.secret(ctx, pod, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def, gid, out)
		case src.DownwardAPI != nil:
			err = m.downward(pod, src.DownwardAPI.Items, def, gid, out)
		case src.ServiceAccountToken != nil:
			err = m.token(ctx, pod, src.ServiceAccountToken, def, gid, out)
		default:
			err = fmt.Errorf("%w: projected source other than configMap, secret, downwardAPI, serviceAccountToken", ErrUnsupported)
		}
		errs = append(errs, err)
	}
	return out, "kubernetes.io~projected", errors.Join(errs...)
}

func keyFiles(data map[string][]byte, items []v1.KeyToPath, def os.FileMode, gid int, kind, name string, out map[string]File) error {
	if len(items) == 0 {
		for k, v := range data {
			out[k] = File{Data: v, Mode: def, GID: gid}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("%w: %s %q: no key %q", ErrSource, kind, name, it.Key)
		}
		out[it.Path] = File{Data: v, Mode: mode(it.Mode, int32(def)), GID: gid}
	}
	return nil
}

func (m *Manager) configMap(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional *bool, def os.FileMode, gid int, out map[string]File) error {
	if m.Src == nil {
		return fmt.Errorf("%w: configmap %q: no API server", ErrSource, name)
	}
	cm, err := m.Src.ConfigMap(ctx, pod.Namespace, name)
	if err != nil {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("%w: configmap %q: %w", ErrSource, name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, def, gid, "configmap", name, out)
}

func (m *Manager) secret(ctx context.Context, pod *v1.Pod, name string, items []v1.KeyToPath, optional *bool, def os.FileMode, gid int, out map[string]File) error {
	if m.Src == nil {
		return fmt.Errorf("%w: secret %q: no API server", ErrSource, name)
	}
	s, err := m.Src.Secret(ctx, pod.Namespace, name)
	if err != nil {
		if optional != nil && *optional {
			return nil
		}
		return fmt.Errorf("%w: secret %q: %w", ErrSource, name, err)
	}
	return keyFiles(s.Data, items, def, gid, "secret", name, out)
}

func (m *Manager) downward(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, def os.FileMode, gid int, out map[string]File) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = downwardField(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = containerconfig.ResourceFieldRef(pod, nil, it.ResourceFieldRef, m.Env)
		}
		if err != nil {
			return err
		}
		out[it.Path] = File{Data: []byte(v), Mode: mode(it.Mode, int32(def)), GID: gid}
	}
	return nil
}

// downwardField is a fieldRef as a file: labels and annotations as whole
// sets are allowed here (not in env), formatted as upstream's FormatMap.
func downwardField(pod *v1.Pod, path string) (string, error) {
	switch path {
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	return containerconfig.FieldRef(pod, path, containerconfig.PodEnv{})
}

func formatMap(m map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}

// maxTokenAge is when upstream renews a token whatever its expiry.
const maxTokenAge = 24 * time.Hour

func (m *Manager) token(ctx context.Context, pod *v1.Pod, tp *v1.ServiceAccountTokenProjection, def os.FileMode, gid int, out map[string]File) error {
	if m.Src == nil {
		return fmt.Errorf("%w: serviceAccountToken: no API server", ErrSource)
	}
	var auds []string
	if tp.Audience != "" {
		auds = []string{tp.Audience}
	}
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{Audiences: auds, ExpirationSeconds: tp.ExpirationSeconds,
		BoundObjectRef: &authv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}}
	var exp int64
	if tp.ExpirationSeconds != nil {
		exp = *tp.ExpirationSeconds
	}
	key := fmt.Sprintf("%s/%s/%s/%d/%s", pod.Namespace, pod.Spec.ServiceAccountName, tp.Audience, exp, pod.UID)
	now := m.now()
	m.mu.Lock()
	tr := m.tokens[key]
	m.mu.Unlock()
	if tr == nil || needsRefresh(tr, now) {
		fresh, err := m.Src.Token(ctx, pod.Namespace, pod.Spec.ServiceAccountName, req)
		if err != nil {
			if tr == nil || now.After(tr.Status.ExpirationTimestamp.Time) {
				return sourceError{msg: "failed to fetch token: " + err.Error(), err: err}
			}
			// keep serving the still-valid token; the next sync retries
		} else {
			tr = fresh
			m.mu.Lock()
			if m.tokens == nil {
				m.tokens = map[string]*authv1.TokenRequest{}
			}
			m.tokens[key] = tr
			m.mu.Unlock()
		}
	}
	md := def
	if gid >= 0 {
		md = 0o640 // upstream: 0600, then group-readable for the fsGroup
	}
	out[tp.Path] = File{Data: []byte(tr.Status.Token), Mode: md, GID: gid}
	return nil
}

// needsRefresh is upstream's rule: renew past 80% of the TTL or after 24 h.
func needsRefresh(tr *authv1.TokenRequest, now time.Time) bool {
	if tr.Spec.ExpirationSeconds == nil {
		return false
	}
	ttl := time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	exp := tr.Status.ExpirationTimestamp.Time
	iat := exp.Add(-ttl)
	return now.After(iat.Add(maxTokenAge)) || now.After(exp.Add(-ttl/5))
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Teardown unmounts what Setup mounted for the Pod and forgets its tokens;
// the caller removes the Pod's directory afterwards.
func (m *Manager) Teardown(uid types.UID) error {
	m.mu.Lock()
	for k := range m.tokens {
		if strings.HasSuffix(k, "/"+string(uid)) {
			delete(m.tokens, k)
		}
	}
	m.mu.Unlock()
	if m.Mount == nil {
		return nil
	}
	return m.Mount.UnmountUnder(filepath.Join(m.RootDir, "pods", string(uid)))
}
