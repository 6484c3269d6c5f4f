// Package containerconfig turns a Pod's container spec into the CRI
// container config: environment from every source, $(VAR) expansion of
// command and args, mounts, ports, resources and security context.
package containerconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrConfig marks a container whose config cannot be built yet (missing
// ConfigMap key, ...): the Pod reports CreateContainerConfigError.
var ErrConfig = errors.New("create container config")

// configError reads as upstream's message alone (it becomes the waiting
// message and the event) while errors.Is still finds ErrConfig.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrConfig, e.err} }

func configErrorf(format string, args ...any) error { return configError{fmt.Errorf(format, args...)} }

// Sources reads the API objects env refers to; nil values mean standalone.
type Sources interface {
	ConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	Secret(ctx context.Context, namespace, name string) (*v1.Secret, error)
	Services(ctx context.Context) ([]*v1.Service, error)
}

// PodEnv is what env needs besides the spec.
type PodEnv struct {
	NodeName string
	HostIPs  []string
	PodIPs   []string
	// NodeAllocatable bounds resourceFieldRef limits when none are set.
	NodeAllocatable v1.ResourceList
}

// Env builds the container's environment in spec order, as the upstream
// kubelet's makeEnvironmentVariables does: service variables first, then
// envFrom, then env with $(VAR) expansion over what came before.
func Env(ctx context.Context, src Sources, pod *v1.Pod, c *v1.Container, pe PodEnv) ([]EnvVar, error) {
	tmp := map[string]string{}
	svc, err := serviceEnv(ctx, src, pod)
	if err != nil {
		return nil, err
	}
	for k, v := range svc {
		tmp[k] = v
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			optional := ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional
			cm, err := getCM(ctx, src, pod.Namespace, ef.ConfigMapRef.Name)
			if err != nil {
				if optional {
					continue
				}
				return nil, err
			}
			for k, v := range cm.Data {
				tmp[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			optional := ef.SecretRef.Optional != nil && *ef.SecretRef.Optional
			s, err := getSecret(ctx, src, pod.Namespace, ef.SecretRef.Name)
			if err != nil {
				if optional {
					continue
				}
				return nil, err
			}
			for k, v := range s.Data {
				tmp[ef.Prefix+k] = string(v)
			}
		}
	}
	lookup := func(n string) (string, bool) { v, ok := tmp[n]; return v, ok }
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom == nil {
			tmp[e.Name] = Expand(val, lookup)
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			val, err = fieldRef(pod, vf.FieldRef.FieldPath, pe)
		case vf.ResourceFieldRef != nil:
			val, err = resourceFieldRef(pod, c, vf.ResourceFieldRef, pe)
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			optional := ref.Optional != nil && *ref.Optional
			cm, gerr := getCM(ctx, src, pod.Namespace, ref.Name)
			if gerr != nil {
				if optional {
					continue
				}
				return nil, gerr
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, configErrorf("couldn't find key %s in ConfigMap %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			val = v
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			s, gerr := getSecret(ctx, src, pod.Namespace, ref.Name)
			if gerr != nil {
				if optional {
					continue
				}
				return nil, gerr
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, configErrorf("couldn't find key %s in Secret %s/%s", ref.Key, pod.Namespace, ref.Name)
			}
			val = string(v)
		default:
			return nil, configErrorf("env %s: unsupported valueFrom", e.Name)
		}
		if err != nil {
			return nil, err
		}
		tmp[e.Name] = val
	}
	out := make([]EnvVar, 0, len(tmp))
	for k, v := range tmp {
		out = append(out, EnvVar{Name: k, Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// EnvVar is one name=value pair.
type EnvVar struct{ Name, Value string }

func getCM(ctx context.Context, src Sources, ns, name string) (*v1.ConfigMap, error) {
	if src == nil {
		return nil, configErrorf("configmap %q: no API server (standalone)", name)
	}
	cm, err := src.ConfigMap(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, configErrorf("configmap %q not found", name)
		}
		return nil, configErrorf("configmap %q: %w", name, err)
	}
	return cm, nil
}

func getSecret(ctx context.Context, src Sources, ns, name string) (*v1.Secret, error) {
	if src == nil {
		return nil, configErrorf("secret %q: no API server (standalone)", name)
	}
	s, err := src.Secret(ctx, ns, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, configErrorf("secret %q not found", name)
		}
		return nil, configErrorf("secret %q: %w", name, err)
	}
	return s, nil
}

// masterServices get variables in every Pod, whatever enableServiceLinks says.
var masterServices = map[string]bool{"kubernetes": true}

func serviceEnv(ctx context.Context, src Sources, pod *v1.Pod) (map[string]string, error) {
	m := map[string]string{}
	if src == nil {
		return m, nil
	}
	svcs, err := src.Services(ctx)
	if err != nil {
		return nil, fmt.Errorf("list services for env: %w", err)
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	chosen := map[string]*v1.Service{}
	for _, s := range svcs {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone {
			continue
		}
		if s.Namespace == metav1.NamespaceDefault && masterServices[s.Name] {
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		} else if s.Namespace == pod.Namespace && links {
			chosen[s.Name] = s
		}
	}
	for _, s := range chosen {
		for _, e := range fromService(s) {
			m[e.Name] = e.Value
		}
	}
	return m, nil
}

// fromService is the upstream envvars.FromServices for one Service.
func fromService(s *v1.Service) []EnvVar {
	if len(s.Spec.Ports) == 0 {
		return nil
	}
	prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
	out := []EnvVar{{prefix + "_SERVICE_HOST", s.Spec.ClusterIP}, {prefix + "_SERVICE_PORT", strconv.Itoa(int(s.Spec.Ports[0].Port))}}
	for _, sp := range s.Spec.Ports {
		if sp.Name != "" {
			out = append(out, EnvVar{prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(sp.Name, "-", "_")), strconv.Itoa(int(sp.Port))})
		}
	}
	for i, sp := range s.Spec.Ports {
		proto := strings.ToLower(string(sp.Protocol))
		if proto == "" {
			proto = "tcp"
		}
		hp := net.JoinHostPort(s.Spec.ClusterIP, strconv.Itoa(int(sp.Port)))
		if i == 0 {
			out = append(out, EnvVar{prefix + "_PORT", proto + "://" + hp})
		}
		pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, sp.Port, strings.ToUpper(proto))
		out = append(out, EnvVar{pp, proto + "://" + hp}, EnvVar{pp + "_PROTO", proto},
			EnvVar{pp + "_PORT", strconv.Itoa(int(sp.Port))}, EnvVar{pp + "_ADDR", s.Spec.ClusterIP})
	}
	return out
}

func fieldRef(pod *v1.Pod, path string, pe PodEnv) (string, error) {
	first := func(s []string) string {
		if len(s) == 0 {
			return ""
		}
		return s[0]
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pe.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return first(pe.HostIPs), nil
	case "status.hostIPs":
		return strings.Join(pe.HostIPs, ","), nil
	case "status.podIP":
		return first(pe.PodIPs), nil
	case "status.podIPs":
		return strings.Join(pe.PodIPs, ","), nil
	}
	if k, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	return "", configErrorf("unsupported fieldRef %q", path)
}

// subscript parses prefix['key'].
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "']")
}

func resourceFieldRef(pod *v1.Pod, c *v1.Container, ref *v1.ResourceFieldSelector, pe PodEnv) (string, error) {
	target := c
	if ref.ContainerName != "" {
		target = nil
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == ref.ContainerName {
				target = &pod.Spec.Containers[i]
			}
		}
		for i := range pod.Spec.InitContainers {
			if pod.Spec.InitContainers[i].Name == ref.ContainerName {
				target = &pod.Spec.InitContainers[i]
			}
		}
		if target == nil {
			return "", configErrorf("resourceFieldRef: no container %q", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", configErrorf("resourceFieldRef %q", ref.Resource)
	}
	rn := v1.ResourceName(name)
	var q resource.Quantity
	var found bool
	switch kind {
	case "limits":
		q, found = target.Resources.Limits[rn]
		if !found {
			q, found = pe.NodeAllocatable[rn] // upstream defaults limits to node allocatable
		}
	case "requests":
		q, found = target.Resources.Requests[rn]
	default:
		return "", configErrorf("resourceFieldRef %q", ref.Resource)
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	if !found {
		return "0", nil
	}
	// Round up, as upstream's ExtractContainerResourceValue does.
	if rn == v1.ResourceCPU {
		return strconv.FormatInt(int64(ceilDiv(q.MilliValue(), divisor.MilliValue())), 10), nil
	}
	return strconv.FormatInt(int64(ceilDiv(q.Value(), divisor.Value())), 10), nil
}

func ceilDiv(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	return (a + b - 1) / b
}

// FieldRef resolves a fieldRef path for the Pod (env and downwardAPI volumes).
func FieldRef(pod *v1.Pod, path string, pe PodEnv) (string, error) { return fieldRef(pod, path, pe) }

// ResourceFieldRef resolves a resourceFieldRef; c may be nil when the
// selector names its container (downwardAPI volumes).
func ResourceFieldRef(pod *v1.Pod, c *v1.Container, ref *v1.ResourceFieldSelector, pe PodEnv) (string, error) {
	if c == nil && ref.ContainerName == "" {
		return "", configErrorf("resourceFieldRef %q: containerName is required in a volume", ref.Resource)
	}
	return resourceFieldRef(pod, c, ref, pe)
}
