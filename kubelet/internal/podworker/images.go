package podworker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
)

// ensureImage returns the image reference to create c from, pulling by
// imagePullPolicy with the Pod's pull secrets, with upstream's events.
func (s *Syncer) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, r *v1.ObjectReference) (string, error) {
	img := c.Image
	spec := &runtimeapi.ImageSpec{Image: img, UserSpecifiedImage: img}
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = v1.PullIfNotPresent
		if !strings.Contains(img, "@") && (strings.HasSuffix(img, ":latest") || !hasTag(img)) {
			policy = v1.PullAlways
		}
	}
	if policy != v1.PullAlways {
		st, err := s.RT.ImageStatus(ctx, spec, false)
		if err != nil {
			return "", fmt.Errorf("%w: image status %s: %w", ErrImagePull, img, err)
		}
		if st.GetImage() != nil {
			s.event(r, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine and can be accessed by the pod", img)
			return st.Image.Id, nil
		}
		if policy == v1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", img)
			s.event(r, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			return "", fmt.Errorf("%w: %s", ErrImageNeverPull, msg)
		}
	}
	key := backoff.ImageKey(pod, img)
	if s.ImageBackoff.IsInBackOffSinceUpdate(key, s.now()) {
		s.event(r, v1.EventTypeNormal, "BackOff", "Back-off pulling image %q", img)
		return "", fmt.Errorf("%w: Back-off pulling image %q", ErrImagePullBackOff, img)
	}
	auths, err := s.pullAuths(ctx, pod, img)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrImagePull, err)
	}
	s.event(r, v1.EventTypeNormal, "Pulling", "Pulling image %q", img)
	s.pullMu.Lock()
	start := s.now()
	var ref string
	var perr error
	for _, a := range append(auths, nil) { // each secret that matches, then anonymous
		if ref, perr = s.RT.PullImage(ctx, spec, a, nil); perr == nil {
			break
		}
	}
	s.pullMu.Unlock()
	if perr != nil {
		s.ImageBackoff.Next(key, s.now())
		s.event(r, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", img, perr)
		return "", fmt.Errorf("%w: failed to pull image %q: %w", ErrImagePull, img, perr)
	}
	s.ImageBackoff.Reset(key)
	took := s.now().Sub(start).Round(time.Millisecond)
	var size uint64
	if st, err := s.RT.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err == nil && st.GetImage() != nil {
		size = st.Image.Size
	}
	s.event(r, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes.", img, took, took, size)
	return ref, nil
}

// hasTag tells whether the image names a tag after its last path element.
func hasTag(img string) bool {
	last := img[strings.LastIndex(img, "/")+1:]
	return strings.Contains(last, ":")
}

// registryHost is the registry part of an image name, docker.io when implicit.
func registryHost(img string) string {
	first, _, ok := strings.Cut(img, "/")
	if !ok || !(strings.ContainsAny(first, ".:") || first == "localhost") {
		return "docker.io"
	}
	return first
}

type dockerConfigEntry struct {
	Auth     string `json:"auth"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// pullAuths reads the Pod's imagePullSecrets (dockerconfigjson and dockercfg)
// and returns the credentials for img's registry. Written by hand: upstream's
// credentialprovider package is not a library module.
func (s *Syncer) pullAuths(ctx context.Context, pod *v1.Pod, img string) ([]*runtimeapi.AuthConfig, error) {
	if len(pod.Spec.ImagePullSecrets) == 0 || s.Sources == nil {
		return nil, nil
	}
	host := registryHost(img)
	var out []*runtimeapi.AuthConfig
	for _, ref := range pod.Spec.ImagePullSecrets {
		sec, err := s.Sources.Secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			s.Log.Sugar().Warnf("pull secret %s/%s: %v", pod.Namespace, ref.Name, err)
			continue // upstream goes on without a missing secret
		}
		entries := map[string]dockerConfigEntry{}
		switch sec.Type {
		case v1.SecretTypeDockerConfigJson:
			var cfg struct {
				Auths map[string]dockerConfigEntry `json:"auths"`
			}
			if err := json.Unmarshal(sec.Data[v1.DockerConfigJsonKey], &cfg); err != nil {
				return nil, fmt.Errorf("pull secret %s: %w", ref.Name, err)
			}
			entries = cfg.Auths
		case v1.SecretTypeDockercfg:
			if err := json.Unmarshal(sec.Data[v1.DockerConfigKey], &entries); err != nil {
				return nil, fmt.Errorf("pull secret %s: %w", ref.Name, err)
			}
		default:
			continue
		}
		for k, e := range entries {
			k = strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://")
			k, _, _ = strings.Cut(k, "/")
			if k == "index.docker.io" {
				k = "docker.io"
			}
			if k != host {
				continue
			}
			a := &runtimeapi.AuthConfig{Username: e.Username, Password: e.Password, ServerAddress: host}
			if e.Auth != "" {
				if dec, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
					a.Username, a.Password, _ = strings.Cut(string(dec), ":")
				}
			}
			out = append(out, a)
		}
	}
	return out, nil
}
