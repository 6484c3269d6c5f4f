package podworker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/distribution/reference"
	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/kubelet/internal/backoff"
	"github.com/nodesuite/nodesuite/kubelet/internal/status"
)

// defaultTag validates the reference as upstream's applyDefaultImageTag
// does and appends :latest when it names neither tag nor digest (without
// qualifying a short name, so the CRI sees what the user wrote).
func defaultTag(img string) (string, error) {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return "", err
	}
	_, tagged := named.(reference.Tagged)
	_, digested := named.(reference.Digested)
	if !tagged && !digested {
		return img + ":latest", nil
	}
	return img, nil
}

// ensureImage returns the image reference to create c from, pulling by
// imagePullPolicy with the Pod's pull secrets, with upstream's events, and
// the image's status when it read one (its user, for the security context).
func (s *Syncer) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, r *v1.ObjectReference) (string, *runtimeapi.Image, error) {
	img, err := defaultTag(c.Image)
	if err != nil {
		msg := fmt.Sprintf("Failed to apply default image tag %q: %v", c.Image, err)
		s.event(r, v1.EventTypeWarning, "InspectFailed", "%s", msg)
		return "", nil, fmt.Errorf("%w: %s", ErrInvalidImageName, msg)
	}
	spec := &runtimeapi.ImageSpec{Image: img, UserSpecifiedImage: c.Image}
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
			return "", nil, fmt.Errorf("%w: image status %s: %w", ErrImagePull, img, err)
		}
		if st.GetImage() != nil {
			s.event(r, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine and can be accessed by the pod", img)
			return st.Image.Id, st.Image, nil
		}
		if policy == v1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", img)
			s.event(r, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			return "", nil, fmt.Errorf("%w: %s", ErrImageNeverPull, msg)
		}
	}
	key := backoff.ImageKey(pod, img)
	if s.ImageBackoff.IsInBackOffSinceUpdate(key, s.now()) {
		s.event(r, v1.EventTypeNormal, "BackOff", "Back-off pulling image %q", img)
		msg := fmt.Sprintf("Back-off pulling image %q", img)
		s.mu.Lock()
		if last := s.lastPullErr[key]; last != "" {
			msg += ": " + status.ErrImagePull + ": " + last // upstream's message carries the last pull error
		}
		s.mu.Unlock()
		return "", nil, reasonError{reason: ErrImagePullBackOff, msg: msg}
	}
	auths, err := s.pullAuths(ctx, pod, img)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrImagePull, err)
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
		s.mu.Lock()
		if s.lastPullErr == nil {
			s.lastPullErr = map[string]string{}
		}
		s.lastPullErr[key] = perr.Error()
		s.mu.Unlock()
		s.event(r, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %v", img, perr)
		return "", nil, fmt.Errorf("%w: failed to pull image %q: %w", ErrImagePull, img, perr)
	}
	s.ImageBackoff.Reset(key)
	took := s.now().Sub(start).Round(time.Millisecond)
	var size uint64
	var pulled *runtimeapi.Image
	if st, err := s.RT.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false); err == nil && st.GetImage() != nil {
		pulled, size = st.Image, st.Image.Size
	}
	s.event(r, v1.EventTypeNormal, "Pulled", "Successfully pulled image %q in %v (%v including waiting). Image size: %v bytes.", img, took, took, size)
	return ref, pulled, nil
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

// reasonError is an error whose text is only its message (as the waiting
// message shows it) while errors.Is still finds its reason.
type reasonError struct {
	reason error
	msg    string
}

func (e reasonError) Error() string { return e.msg }
func (e reasonError) Unwrap() error { return e.reason }
